package diagnose

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

const testPID = 4121

var (
	listen8080 = netip.MustParseAddrPort("10.0.0.5:8080")
	db         = netip.MustParseAddrPort("10.0.3.7:5432")
)

// sock builds a CLOSE_WAIT socket: inbound on listen8080 when remote is a
// client, outbound to remote otherwise.
type sockSpec struct {
	inbound     bool
	remote      netip.AddrPort
	recvQ       uint32
	age         time.Duration
	idle        time.Duration // last_data_recv − last_ack_recv
	sent        time.Duration // last_data_sent, when set
	keepalive   bool
	notAccepted bool
	noInfo      bool
}

var nextPort uint16 = 30000

func mk(sp sockSpec) snapshot.Socket {
	nextPort++
	s := snapshot.Socket{}
	s.State = sockdiag.CloseWait
	s.RecvQ = sp.recvQ
	s.Inode = uint64(nextPort)
	s.Cookie = uint64(nextPort)
	if sp.inbound {
		s.Local = listen8080
		s.Remote = netip.AddrPortFrom(netip.MustParseAddr("10.0.9.9"), nextPort)
		s.SetListener(listen8080)
	} else {
		s.Local = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), nextPort)
		s.Remote = sp.remote
	}
	if sp.notAccepted {
		s.NotAccepted, s.Inode = true, 0
	}
	if !sp.noInfo {
		s.HasInfo = true
		s.Info.LastAckRecv = uint32(sp.age.Milliseconds())
		s.Info.LastDataRecv = uint32((sp.age + sp.idle).Milliseconds())
		s.Info.LastDataSent = uint32(sp.sent.Milliseconds())
	}
	if sp.keepalive {
		s.Timer = sockdiag.TimerKeepalive
	}
	fd := int(nextPort)
	if sp.notAccepted {
		fd = -1
	}
	s.Owners = []procscan.Owner{{PID: testPID, FD: fd}}
	return s
}

func many(n int, sp sockSpec) []snapshot.Socket {
	out := make([]snapshot.Socket, n)
	for i := range out {
		out[i] = mk(sp)
	}
	return out
}

func snapOf(runtimeExe string, socks ...[]snapshot.Socket) *snapshot.Snapshot {
	snap := &snapshot.Snapshot{
		Time:   time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC),
		States: map[sockdiag.State]int{},
		Processes: map[int]*procscan.Process{testPID: {
			PID: testPID, Comm: "app", Cmdline: runtimeExe + " app", Exe: runtimeExe, User: "svc",
			OpenFDs: 1000, FDSoft: 2048, FDHard: 4096,
		}},
	}
	for _, ss := range socks {
		snap.Sockets = append(snap.Sockets, ss...)
	}
	l := snapshot.Socket{}
	l.State, l.Local, l.RecvQ, l.SendQ = sockdiag.Listen, listen8080, 12, 128
	l.Owners = []procscan.Owner{{PID: testPID, FD: 3}}
	snap.Listeners = []snapshot.Socket{l}
	return snap
}

// brief is the part of a finding the rules decide.
type brief struct {
	Cause     string
	Direction string
	Remote    string
	LocalPort uint16
	Count     int
	Keepalive int
}

func briefs(fs []Finding) []brief {
	out := []brief{}
	for _, f := range fs {
		out = append(out, brief{f.Cause, f.Direction, f.Remote, f.LocalPort, f.Count, f.Keepalive})
	}
	return out
}

func analyzeOne(t *testing.T, snap *snapshot.Snapshot, opt Options) *ProcessReport {
	t.Helper()
	r := Analyze(snap, DefaultThresholds, opt)
	if len(r.Processes) != 1 {
		t.Fatalf("%d processes, want 1", len(r.Processes))
	}
	return r.Processes[0]
}

func TestFindingsRules(t *testing.T) {
	old := 20 * time.Minute
	tests := []struct {
		name  string
		socks [][]snapshot.Socket
		want  []brief
	}{
		{"missing close inbound", [][]snapshot.Socket{many(143, sockSpec{inbound: true, age: old}), many(7, sockSpec{inbound: true, recvQ: 1, age: old})},
			[]brief{{"missing-close", "inbound", "", 8080, 143, 0}, {"abandoned-unread", "inbound", "", 8080, 7, 0}}},
		{"abandoned unread with data and keepalive", [][]snapshot.Socket{many(20, sockSpec{inbound: true, recvQ: 4097, age: old, keepalive: true})},
			[]brief{{"abandoned-unread", "inbound", "", 8080, 20, 20}}},
		{"pool idle outbound", [][]snapshot.Socket{many(30, sockSpec{remote: db, recvQ: 1, age: old, idle: 600 * time.Second})},
			[]brief{{"pool-idle", "outbound", "10.0.3.7:5432", 0, 30, 0}}},
		{"outbound with unread data is abandoned", [][]snapshot.Socket{many(9, sockSpec{remote: db, recvQ: 300, age: old})},
			[]brief{{"abandoned-unread", "outbound", "10.0.3.7:5432", 0, 9, 0}}},
		{"outbound read to EOF", [][]snapshot.Socket{many(9, sockSpec{remote: db, age: old})},
			[]brief{{"missing-close", "outbound", "10.0.3.7:5432", 0, 9, 0}}},
		{"not accepted", [][]snapshot.Socket{many(12, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Second})},
			[]brief{{"not-accepted", "inbound", "", 8080, 12, 0}}},
		{"young and few is normal", [][]snapshot.Socket{many(3, sockSpec{inbound: true, age: 2 * time.Second})},
			[]brief{{"normal-half-close", "inbound", "", 8080, 3, 0}}},
		{"young but many is not normal", [][]snapshot.Socket{many(NormalHalfCloseMax+1, sockSpec{inbound: true, age: 2 * time.Second})},
			[]brief{{"missing-close", "inbound", "", 8080, NormalHalfCloseMax + 1, 0}}},
		{"few but old is not normal", [][]snapshot.Socket{many(2, sockSpec{inbound: true, age: 11 * time.Second})},
			[]brief{{"missing-close", "inbound", "", 8080, 2, 0}}},
		{"without ages nothing is called normal", [][]snapshot.Socket{many(2, sockSpec{inbound: true, noInfo: true})},
			[]brief{{"missing-close", "inbound", "", 8080, 2, 0}}},
		{"two remotes, two findings, biggest first", [][]snapshot.Socket{
			many(7, sockSpec{remote: db, recvQ: 1, age: old, idle: time.Minute}),
			many(9, sockSpec{remote: netip.MustParseAddrPort("10.0.3.8:6379"), recvQ: 1, age: old, idle: time.Minute})},
			[]brief{{"pool-idle", "outbound", "10.0.3.8:6379", 0, 9, 0}, {"pool-idle", "outbound", "10.0.3.7:5432", 0, 7, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := analyzeOne(t, snapOf("/usr/bin/java", tt.socks...), Options{})
			if diff := cmp.Diff(tt.want, briefs(p.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			for _, f := range p.Findings {
				if len(f.Evidence) == 0 || len(f.NextSteps) == 0 || f.Check == "" && f.Cause != "normal-half-close" {
					t.Errorf("%s: evidence %q next steps %q check %q", f.Cause, f.Evidence, f.NextSteps, f.Check)
				}
			}
		})
	}
}

func TestFindingEvidenceInWords(t *testing.T) {
	snap := snapOf("/usr/bin/java", many(143, sockSpec{inbound: true, age: time.Hour}), many(7, sockSpec{inbound: true, recvQ: 1, age: time.Hour}))
	p := analyzeOne(t, snap, Options{})
	mc := p.Findings[0]
	for _, want := range []string{"143 of 150 sockets on port 8080 have Recv-Q 0: the app read up to EOF", "none has SO_KEEPALIVE", "all from one peer address, 10.0.9.9 (a proxy"} {
		if !strings.Contains(strings.Join(mc.Evidence, "\n"), want) {
			t.Errorf("evidence %q lacks %q", mc.Evidence, want)
		}
	}
	if mc.Check != "ss -tnp state close-wait '( sport = :8080 )'" {
		t.Errorf("check %q", mc.Check)
	}
	steps := strings.Join(mc.NextSteps, "\n")
	if !strings.Contains(steps, "sudo -u svc jcmd 4121 Thread.print") || !strings.Contains(steps, "awk -v RS=") {
		t.Errorf("java next steps without pid, user or socket filter:\n%s", steps)
	}
	if !strings.Contains(strings.Join(mc.Fix, "\n"), "try-with-resources") {
		t.Errorf("java fix %q", mc.Fix)
	}
	if mc.Oldest != 3600 {
		t.Errorf("oldest %v, want 3600", mc.Oldest)
	}
}

func TestPoolIdleEstimatesServerIdleTimeout(t *testing.T) {
	var socks []snapshot.Socket
	for _, idle := range []time.Duration{590 * time.Second, 600 * time.Second, 600 * time.Second, 610 * time.Second, 2 * time.Hour} {
		socks = append(socks, mk(sockSpec{remote: db, recvQ: 1, age: time.Hour, idle: idle}))
	}
	for _, rt := range []struct{ exe, fix string }{
		{"/usr/local/bin/myservice-go", "IdleConnTimeout: 472 * time.Second"},
		{"/usr/bin/python3.11", "pool_maxsize"},
		{"/usr/bin/node", "keepAlive: true, timeout: 472000"},
		{"/usr/bin/java", "evictIdleConnections(TimeValue.ofMilliseconds(472000))"},
	} {
		snap := snapOf(rt.exe, socks)
		p := analyzeOne(t, snap, Options{})
		if p.Runtime == "other" && strings.HasSuffix(rt.exe, "-go") {
			p.Runtime = "go" // a Go binary is known from its build info, which needs I/O
			p.Findings = Findings(p, snap)
		}
		f := p.Findings[0]
		if f.Cause != "pool-idle" || f.RemoteIdleTimeout != 600 {
			t.Fatalf("%s: %s, idle timeout %v; want pool-idle, median 600", rt.exe, f.Cause, f.RemoteIdleTimeout)
		}
		ev := strings.Join(f.Evidence, "\n")
		if !strings.Contains(ev, "after about 600 s idle") || !strings.Contains(ev, "less than 590 s") {
			t.Errorf("evidence:\n%s", ev)
		}
		if fix := strings.Join(f.Fix, "\n"); !strings.Contains(fix, rt.fix) {
			t.Errorf("%s fix lacks %q:\n%s", p.Runtime, rt.fix, fix)
		}
	}
}

func TestNotAcceptedNamesTheListenerQueue(t *testing.T) {
	p := analyzeOne(t, snapOf("/usr/bin/node", many(12, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Minute})), Options{})
	f := p.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	if !strings.Contains(ev, "listener 10.0.0.5:8080 has 12 connections queued (backlog 128)") {
		t.Errorf("evidence:\n%s", ev)
	}
	steps := strings.Join(f.NextSteps, "\n")
	if !strings.Contains(steps, "without the flag SIGUSR2 TERMINATES node") || !strings.Contains(steps, "node inspect -p 4121") {
		t.Errorf("node steps without --report-on-signal:\n%s", steps)
	}
	snap := snapOf("/usr/bin/node", many(12, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Minute}))
	snap.Processes[testPID].Cmdline = "node --report-on-signal server.js"
	p = analyzeOne(t, snap, Options{})
	steps = strings.Join(p.Findings[0].NextSteps, "\n")
	if !strings.HasPrefix(steps, "kill -USR2 4121") || !strings.Contains(steps, "SIGUSR1 would only open the inspector") {
		t.Errorf("node steps with --report-on-signal:\n%s", steps)
	}
}

func TestGrowthAndETA(t *testing.T) {
	before := snapOf("/usr/bin/java", many(100, sockSpec{inbound: true, age: 2 * time.Minute}))
	kept := before.Sockets[10:] // 10 closed
	added := many(70, sockSpec{inbound: true, age: time.Second})
	after := snapOf("/usr/bin/java", kept, added)
	after.Time = before.Time.Add(10 * time.Second)
	p := analyzeOne(t, after, Options{Previous: NewBaseline(before)})
	g := p.Growth
	want := Growth{Interval: 10 * time.Second, Before: 100, Entered: 70, Left: 10, EnteredPerMin: 420, LeftPerMin: 60, NetPerMin: 360,
		HasETA: true}
	free, rate := 2048.0-1000, 360.0
	want.ETA = time.Duration(free / rate * float64(time.Minute))
	if diff := cmp.Diff(want, *g); diff != "" {
		t.Errorf("growth (-want +got):\n%s", diff)
	}
	if p.Findings[0].Cause != "growing" || p.Status != Critical {
		t.Errorf("first finding %s, status %s; want growing, critical (fd limit in under %s)", p.Findings[0].Cause, p.Status, GrowthETACritical)
	}
	if ev := strings.Join(p.Findings[0].Evidence, "\n"); !strings.Contains(ev, "70 sockets entered CLOSE_WAIT and 10 left in 10s") || !strings.Contains(ev, "in about 2m54s") {
		t.Errorf("evidence:\n%s", ev)
	}

	// Churn: as many closed as opened is not growth, and young ones stay normal.
	steady := snapOf("/usr/bin/java", before.Sockets[3:], many(3, sockSpec{inbound: true, age: time.Second}))
	steady.Time = before.Time.Add(10 * time.Second)
	p = analyzeOne(t, steady, Options{Previous: NewBaseline(before)})
	if p.Growth.Growing() || p.Growth.HasETA || p.Status != OK {
		t.Errorf("steady churn: %+v status %s", p.Growth, p.Status)
	}
	for _, f := range p.Findings {
		if f.Cause == "growing" {
			t.Errorf("steady churn has a growing finding")
		}
	}

	// A server closing normally, caught with 1 then 3 young sockets, is not growing.
	quiet := snapOf("/usr/bin/java", many(1, sockSpec{inbound: true, age: time.Second}))
	busier := snapOf("/usr/bin/java", many(3, sockSpec{inbound: true, age: time.Second}))
	busier.Time = quiet.Time.Add(10 * time.Second)
	p = analyzeOne(t, busier, Options{Previous: NewBaseline(quiet)})
	if p.Growth.Entered != 3 || p.Growth.Left != 1 || p.Growth.Growing() || p.Status != OK || p.Findings[0].Cause != "normal-half-close" {
		t.Errorf("in-flight closes: growth %+v status %s findings %+v", p.Growth, p.Status, briefs(p.Findings))
	}
}

func TestClassifyRuntime(t *testing.T) {
	tests := []struct {
		name string
		f    RuntimeFacts
		want string
	}{
		{"java by exe", RuntimeFacts{Exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"}, "java"},
		{"java launcher renamed, libjvm mapped", RuntimeFacts{Exe: "/opt/app/bin/payments", Libs: []string{"libc.so.6", "libjvm.so"}}, "java"},
		{"node", RuntimeFacts{Exe: "/usr/bin/node", Cmdline: "node server.js"}, "node"},
		{"node embedded", RuntimeFacts{Exe: "/opt/x/electronapp", Libs: []string{"libnode.so.108"}}, "node"},
		{"python by exe", RuntimeFacts{Exe: "/usr/bin/python3.11"}, "python"},
		{"gunicorn", RuntimeFacts{Exe: "/usr/bin/python3", Cmdline: "/srv/venv/bin/gunicorn app:app"}, "python"},
		{"uwsgi with libpython", RuntimeFacts{Exe: "/usr/bin/uwsgi-core", Libs: []string{"libpython3.11.so.1.0"}}, "python"},
		{"go by build info", RuntimeFacts{Exe: "/usr/local/bin/api", GoVersion: "go1.26.8"}, "go"},
		{"go binary named like node", RuntimeFacts{Exe: "/usr/bin/node_exporter", GoVersion: "go1.22.1"}, "go"},
		{"ruby", RuntimeFacts{Exe: "/usr/bin/ruby3.1", Cmdline: "puma 6.4 (tcp://0.0.0.0:3000)"}, "ruby"},
		{"puma by comm", RuntimeFacts{Comm: "puma"}, "ruby"},
		{"dotnet", RuntimeFacts{Exe: "/usr/share/dotnet/dotnet", Cmdline: "dotnet Api.dll"}, "dotnet"},
		{"dotnet apphost", RuntimeFacts{Exe: "/app/Api", Libs: []string{"libcoreclr.so", "libhostfxr.so"}}, "dotnet"},
		{"nginx", RuntimeFacts{Exe: "/usr/sbin/nginx", Cmdline: "nginx: worker process", Libs: []string{"libssl.so.3"}}, "other"},
		{"nothing known", RuntimeFacts{}, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := ClassifyRuntime(tt.f)
			if got != tt.want || (got != "other" && why == "") {
				t.Errorf("ClassifyRuntime(%+v) = %q (%q), want %q", tt.f, got, why, tt.want)
			}
		})
	}
}

func TestSummarizeThreads(t *testing.T) {
	var ts []procscan.Thread
	for i := 0; i < 48; i++ {
		ts = append(ts, procscan.Thread{State: 'S', WChan: "futex_wait_queue", Syscall: 202})
	}
	ts = append(ts, procscan.Thread{State: 'R', Syscall: -1}, procscan.Thread{State: 'S', WChan: "do_epoll_wait", Syscall: -2})
	got := SummarizeThreads(ts).String()
	for _, want := range []string{"48 of 50 threads sleeping in futex_wait_queue", "1 running", "1 sleeping in do_epoll_wait"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
	if SummarizeThreads(nil) != nil {
		t.Errorf("no threads should give no summary")
	}
}

func TestFindingEvidenceSingular(t *testing.T) {
	p := analyzeOne(t, snapOf("/usr/bin/java", many(1, sockSpec{inbound: true, age: time.Hour})), Options{})
	if got := p.Findings[0].Evidence[0]; !strings.HasPrefix(got, "the socket on port 8080 has Recv-Q 0") {
		t.Errorf("evidence %q", got)
	}
	p = analyzeOne(t, snapOf("/usr/bin/java", many(1, sockSpec{inbound: true, notAccepted: true, age: time.Hour}), many(2, sockSpec{inbound: true, age: time.Hour})), Options{})
	for _, f := range p.Findings {
		if f.Cause == "not-accepted" && !strings.HasPrefix(f.Evidence[0], "1 of 3 sockets on port 8080 waits in the accept queue") {
			t.Errorf("evidence %q", f.Evidence[0])
		}
	}
}

func TestManyRemotesAreMerged(t *testing.T) {
	var socks [][]snapshot.Socket
	for i := 0; i < 40; i++ {
		r := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 443)
		socks = append(socks, many(1+i%3, sockSpec{remote: r, recvQ: 1, age: time.Hour, idle: 5 * time.Second}))
	}
	p := analyzeOne(t, snapOf("/usr/bin/python3", socks...), Options{})
	if len(p.Findings) != MaxGroups {
		t.Fatalf("%d findings for 40 remotes, want %d: %+v", len(p.Findings), MaxGroups, briefs(p.Findings))
	}
	total := 0
	var other *Finding
	for i, f := range p.Findings {
		total += f.Count
		if f.Remote == "" {
			other = &p.Findings[i]
		}
	}
	if total != p.CloseWait || other == nil || !strings.Contains(other.Evidence[0], "to 35 other remotes") || !strings.Contains(other.NextSteps[0], "talks to 35 other remotes") {
		t.Errorf("counts %d of %d; merged finding %+v", total, p.CloseWait, other)
	}
}

// TestAnalyzeReadsHintsAndThreadsThroughFS points Options.FS at a fixture
// /proc: a Java service under another name (libjvm.so mapped) whose 10
// threads mostly wait in futex.
func TestAnalyzeReadsHintsAndThreadsThroughFS(t *testing.T) {
	fs := procscan.NewFS("testdata/proc")
	snap := snapOf("/opt/payments/bin/payments", many(20, sockSpec{inbound: true, recvQ: 1, age: time.Hour}))
	p := analyzeOne(t, snap, Options{FS: &fs})
	if p.Runtime != "java" || p.RuntimeEvidence != "libjvm.so is mapped" {
		t.Errorf("runtime %q (%q), want java from libjvm.so", p.Runtime, p.RuntimeEvidence)
	}
	want := &ThreadSummary{Total: 10, Groups: []ThreadGroup{{State: "sleeping", Wait: "futex_wait_queue (futex)", Count: 8}, {State: "running", Count: 2}}}
	if diff := cmp.Diff(want, p.Threads); diff != "" {
		t.Errorf("threads (-want +got):\n%s", diff)
	}
	ev := strings.Join(p.Findings[0].Evidence, "\n")
	if !strings.Contains(ev, "threads: 8 of 10 threads sleeping in futex_wait_queue (futex), 2 running") {
		t.Errorf("abandoned-unread evidence lacks the threads:\n%s", ev)
	}
	if r, want := Analyze(snap, DefaultThresholds, Options{FS: &fs}), refAnalyze(snap, DefaultThresholds, Options{FS: &fs}); !reflect.DeepEqual(structure(r), want) {
		t.Errorf("with FS, the report differs from the reference")
	}
	// Without FS, only the name is known.
	if p := analyzeOne(t, snap, Options{}); p.Runtime != "other" || p.Threads != nil {
		t.Errorf("without FS: runtime %s threads %v", p.Runtime, p.Threads)
	}
}
