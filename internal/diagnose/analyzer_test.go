package diagnose

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// cloneSnap copies a snapshot deeply enough to change its sockets and
// processes without touching the original.
func cloneSnap(s *snapshot.Snapshot) *snapshot.Snapshot {
	c := *s
	c.Sockets = slices.Clone(s.Sockets)
	for i := range c.Sockets {
		c.Sockets[i].Owners = slices.Clone(c.Sockets[i].Owners)
	}
	c.Processes = map[int]*procscan.Process{}
	for pid, p := range s.Processes {
		cp := *p
		c.Processes[pid] = &cp
	}
	return &c
}

// advance moves a snapshot's time and every socket's tcp_info "ms since"
// fields on by d, as snapshot.Options.CarryInfo does.
func advance(s *snapshot.Snapshot, d time.Duration) {
	s.Time = s.Time.Add(d)
	ms := uint32(d.Milliseconds())
	for i := range s.Sockets {
		if in := &s.Sockets[i].Info; s.Sockets[i].HasInfo {
			in.LastAckRecv += ms
			in.LastDataRecv += ms
			in.LastDataSent += ms
		}
	}
}

// reportView is what a report says, without the snapshot it points to, for diffs.
func reportView(r *Report) any {
	type proc struct {
		PID                  int
		Runtime              string
		CloseWait            int
		NotAccepted          int
		Oldest               time.Duration
		HasAge               bool
		Status               Status
		Reasons              []string
		Findings             []Finding
		Growth               *Growth
		Sockets              int
		StartTime, Processed bool
	}
	v := struct {
		Status       Status
		CloseWait    int
		Unattributed UnattributedReport
		Sample       time.Duration
		Selected     bool
		Processes    []proc
	}{r.Status, r.CloseWait, r.Unattributed, r.Sample, r.Selected, nil}
	for _, p := range r.Processes {
		v.Processes = append(v.Processes, proc{p.PID, p.Runtime, p.CloseWait, p.NotAccepted, p.Oldest, p.HasAge, p.Status, p.Reasons, p.Findings, p.Growth, len(p.Sockets), p.Process != nil, p.Threads != nil})
	}
	return v
}

// sameReport fails unless got is deeply equal to want (reflect.DeepEqual on
// the whole Report: snapshot, process facts, sockets, findings, growth).
func sameReport(t *testing.T, what string, got, want *Report) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: reports differ (-want +got):\n%s", what, cmp.Diff(reportView(want), reportView(got)))
	}
}

// TestAnalyzerSequence runs one Analyzer over a sequence of snapshots, each
// made from the one before, and checks each of its reports against a fresh
// Analyze and against the implementation before the Analyzer (ref_test.go).
// missed is how many sockets the cache must not recognise in that step
// (-1: all, -2: not checked), recounted how many parts may be recounted.
func TestAnalyzerSequence(t *testing.T) {
	old := 20 * time.Minute
	var remotes []netip.AddrPort
	for i := range 9 {
		remotes = append(remotes, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 4, byte(i)}), 443))
	}
	first := func() *snapshot.Snapshot {
		socks := [][]snapshot.Socket{
			many(143, sockSpec{inbound: true, age: old}),
			many(7, sockSpec{inbound: true, recvQ: 1, age: old}),
			many(30, sockSpec{remote: db, recvQ: 1, age: old, idle: 600 * time.Second}),
			many(12, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Minute}),
			many(2, sockSpec{remote: netip.MustParseAddrPort("10.0.3.8:6379"), age: 2 * time.Second}),
		}
		for i, r := range remotes { // 9 remotes: the smallest 5 merge
			socks = append(socks, many(1+i, sockSpec{remote: r, recvQ: 1, age: old, idle: time.Duration(30+i) * time.Second, keepalive: i%2 == 0}))
		}
		s := snapOf("/usr/bin/java", socks...)
		s.Processes[testPID].StartTime = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		return s
	}
	var prev *snapshot.Snapshot // the snapshot of the step before
	var base *Baseline
	type step struct {
		name      string
		next      func() *snapshot.Snapshot
		th        Thresholds
		opt       func() Options
		missed    int
		recounted int // at most
	}
	all, any := -1, -2
	same := func() *snapshot.Snapshot { return cloneSnap(prev) }
	noOpt := func() Options { return Options{} }
	steps := []step{
		{"first", first, DefaultThresholds, noOpt, all, 100},
		{"unchanged", same, DefaultThresholds, noOpt, 0, 0},
		{"ages advanced 1s", func() *snapshot.Snapshot { s := cloneSnap(prev); advance(s, time.Second); return s }, DefaultThresholds, noOpt, 0, 0},
		{"ages advanced 9s: the young pair is no longer young", func() *snapshot.Snapshot { s := cloneSnap(prev); advance(s, 9*time.Second); return s }, DefaultThresholds, noOpt, 0, 0},
		{"one socket added", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets = slices.Insert(s.Sockets, 40, mk(sockSpec{inbound: true, age: time.Second}))
			return s
		}, DefaultThresholds, noOpt, 1, 1},
		{"one pool-idle socket removed", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets = slices.Delete(s.Sockets, 170, 171)
			return s
		}, DefaultThresholds, noOpt, 0, 1},
		{"one socket read to EOF (Recv-Q 1 to 0)", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets[150].RecvQ = 0
			return s
		}, DefaultThresholds, noOpt, 1, 2},
		{"one socket's age reset by a keepalive probe", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets[3].Info.LastAckRecv, s.Sockets[3].Info.LastDataRecv = 10, 10
			return s
		}, DefaultThresholds, noOpt, 0, 0},
		{"thresholds changed", same, Thresholds{CountWarning: 10, CountCritical: 150, FDShareWarning: 0.1, AgeWarning: time.Minute}, noOpt, 0, 0},
		{"growth against a baseline", func() *snapshot.Snapshot {
			base = NewBaseline(prev)
			s := cloneSnap(prev)
			advance(s, 10*time.Second)
			s.Sockets = append(s.Sockets, many(40, sockSpec{inbound: true, age: time.Second})...)
			return s
		}, DefaultThresholds, func() Options { return Options{Previous: base} }, 40, 1},
		{"growth, same baseline, unchanged", same, DefaultThresholds, func() Options { return Options{Previous: base} }, 0, 0},
		{"growth, new baseline", func() *snapshot.Snapshot {
			base = NewBaseline(prev)
			s := cloneSnap(prev)
			advance(s, 5*time.Second)
			return s
		}, DefaultThresholds, func() Options { return Options{Previous: base} }, 0, 0},
		{"baseline at the same time: no growth", same, DefaultThresholds, func() Options { return Options{Previous: NewBaseline(prev)} }, 0, 0},
		{"sockets in another order", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(s.Sockets), func(i, j int) { s.Sockets[i], s.Sockets[j] = s.Sockets[j], s.Sockets[i] })
			return s
		}, DefaultThresholds, noOpt, any, 4},
		{"a small remote grows into the top groups", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets = append(s.Sockets, many(20, sockSpec{remote: remotes[0], recvQ: 1, age: old, idle: time.Minute})...)
			return s
		}, DefaultThresholds, noOpt, 20, 3},
		{"selected by pid", same, DefaultThresholds, func() Options { return Options{PIDs: map[int]bool{testPID: true}} }, 0, 0},
		{"same sockets, the process exec'd (new start time)", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Processes[testPID].StartTime = s.Processes[testPID].StartTime.Add(time.Hour)
			s.Processes[testPID].Exe, s.Processes[testPID].Cmdline = "/usr/bin/node", "node server.js"
			return s
		}, DefaultThresholds, noOpt, all, 100},
		{"process replaced by a new one with the same pid", func() *snapshot.Snapshot {
			s := snapOf("/usr/bin/python3", many(5, sockSpec{inbound: true, age: time.Hour}), many(3, sockSpec{remote: db, recvQ: 1, age: time.Hour, idle: time.Minute}))
			s.Processes[testPID].StartTime = time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
			s.Time = prev.Time.Add(time.Second)
			return s
		}, DefaultThresholds, noOpt, all, 100},
		{"the process's facts are gone", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			delete(s.Processes, testPID)
			return s
		}, DefaultThresholds, noOpt, all, 100},
		{"then back", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Processes[testPID] = &procscan.Process{PID: testPID, Exe: "/usr/bin/python3", StartTime: time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)}
			return s
		}, DefaultThresholds, noOpt, all, 100},
		{"and unchanged", same, DefaultThresholds, noOpt, 0, 0},
		{"no CLOSE_WAIT left", func() *snapshot.Snapshot {
			s := cloneSnap(prev)
			s.Sockets = nil
			return s
		}, DefaultThresholds, noOpt, 0, 0},
	}
	a := NewAnalyzer()
	for _, st := range steps {
		snap := st.next()
		opt := st.opt()
		got := a.Analyze(snap, st.th, opt)
		sameReport(t, st.name+": Analyzer vs Analyze", got, Analyze(snap, st.th, opt))
		sameReport(t, st.name+": Analyzer vs the reference", structure(got), refAnalyze(snap, st.th, opt))
		n := 0
		for _, p := range got.Processes {
			n += len(p.Sockets)
		}
		want := st.missed
		if want == all {
			want = n
		}
		missed := a.stats.sockets - a.stats.matched
		if a.stats.sockets != n || (want != any && missed != want) || a.stats.recounted > st.recounted {
			t.Errorf("%s: %d of %d sockets (%d) missed the cache (want %d), %d parts recounted (want at most %d)",
				st.name, missed, a.stats.sockets, n, want, a.stats.recounted, st.recounted)
		}
		// Going from a measured growth to none changes one sentence of the
		// small part (a normal half-close "not growing" becomes "unknown").
		rewrites := map[string]int{"baseline at the same time: no growth": 1}
		if st.missed == 0 && st.recounted == 0 && a.stats.written != rewrites[st.name] {
			t.Errorf("%s: %d findings' texts written anew, want all kept", st.name, a.stats.written)
		}
		prev = snap
	}
}

// TestAnalyzerRandom checks an Analyzer against Analyze and against the
// reference over random sequences of snapshots: several processes, shared
// sockets, merged groups, sockets without tcp_info or keys, zoned
// addresses, duplicates, reordering, growth baselines and pid selections.
func TestAnalyzerRandom(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomRun(t, uint64(seed), 30) })
	}
}

type randWorld struct {
	rng    *rand.Rand
	cookie uint64
	pids   []int
}

var (
	randPorts   = []uint16{80, 443, 8080, 8081, 8082, 8083, 8084, 8085, 9000}
	randRemotes = func() []netip.AddrPort {
		var out []netip.AddrPort
		for i := range 11 {
			out = append(out, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 5432))
		}
		return append(out,
			netip.MustParseAddrPort("[2001:db8::1]:443"),
			netip.MustParseAddrPort("[fe80::1%eth0]:443"),
			netip.MustParseAddrPort("[::ffff:10.1.0.1]:5432"))
	}()
	randPeers = []netip.Addr{
		netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("fe80::2%eth0"),
	}
)

func (w *randWorld) sock() snapshot.Socket {
	r := w.rng
	w.cookie++
	s := snapshot.Socket{}
	s.State = sockdiag.CloseWait
	switch r.IntN(10) {
	case 0: // no cookie: the inode
		s.Inode = w.cookie
	case 1: // neither: the 4-tuple
	default:
		s.Cookie, s.Inode = w.cookie, w.cookie
	}
	pid := w.pids[r.IntN(len(w.pids))]
	fd := int(w.cookie)
	if r.IntN(2) == 0 {
		// inbound: few ports of one process, some sockets not accepted
		port := randPorts[r.IntN(len(randPorts))]
		if r.IntN(3) > 0 {
			port = randPorts[pid%3]
		}
		s.Local = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), port)
		s.SetListener(s.Local)
		s.Remote = netip.AddrPortFrom(randPeers[r.IntN(len(randPeers))], uint16(20000+w.cookie%40000))
		if r.IntN(8) == 0 {
			s.NotAccepted, s.Inode, fd = true, 0, -1
		}
	} else {
		s.Local = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), uint16(20000+w.cookie%40000))
		s.Remote = randRemotes[min(r.IntN(len(randRemotes)), r.IntN(len(randRemotes)))]
	}
	s.RecvQ = []uint32{0, 0, 1, 1, 1, 2, 4097}[r.IntN(7)]
	if r.IntN(5) == 0 {
		s.Timer = sockdiag.TimerKeepalive
	}
	if r.IntN(10) > 0 {
		s.HasInfo = true
		s.Info.LastAckRecv = []uint32{500, 3000, 9999, 10000, 60000, 7200000}[r.IntN(6)] + uint32(r.IntN(1000))
		s.Info.LastDataRecv = s.Info.LastAckRecv + []uint32{0, 30000, 600000, 600000, 601000}[r.IntN(5)]
		if r.IntN(10) == 0 {
			s.Info.LastDataRecv = s.Info.LastAckRecv - 1
		}
		if r.IntN(4) == 0 { // a goodbye: data with the FIN, after a silence
			s.Info.LastDataRecv = s.Info.LastAckRecv + uint32(r.IntN(2))
			s.Info.LastDataSent = s.Info.LastDataRecv + []uint32{100, 1000, 30000, 600000}[r.IntN(4)]
		}
	}
	s.Owners = []procscan.Owner{{PID: pid, FD: fd}}
	switch r.IntN(20) {
	case 0: // shared after fork
		s.Owners = append(s.Owners, procscan.Owner{PID: w.pids[r.IntN(len(w.pids))], FD: fd})
	case 1: // the same process through two fds
		s.Owners = append(s.Owners, procscan.Owner{PID: pid, FD: fd + 1})
	case 2: // no owner found
		s.Owners = nil
	}
	return s
}

func (w *randWorld) process(pid int) *procscan.Process {
	exes := []string{"/usr/bin/java", "/usr/bin/node", "/usr/bin/python3", "/opt/app/server"}
	p := &procscan.Process{PID: pid, Comm: "app", Exe: exes[w.rng.IntN(len(exes))], User: []string{"root", "svc"}[w.rng.IntN(2)],
		OpenFDs: []int{100, 900, 2000, 4030, 4096, 5000}[w.rng.IntN(6)], FDSoft: 4096, StartTime: time.Unix(int64(1e9+w.rng.IntN(1e6)), 0)}
	p.Cmdline = p.Exe + []string{" app", " --report-on-signal app"}[w.rng.IntN(2)]
	switch w.rng.IntN(4) {
	case 0:
		p.Container = procscan.Container{Runtime: "docker", ID: "0123456789abcdef0123"}
	case 1:
		p.Container = procscan.Container{ID: "abc"}
	}
	return p
}

func randomRun(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, 7))
	w := &randWorld{rng: r, pids: []int{100, 200, 300}}
	snap := &snapshot.Snapshot{Time: time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC), Processes: map[int]*procscan.Process{}}
	for _, pid := range w.pids {
		snap.Processes[pid] = w.process(pid)
	}
	for i, port := range randPorts {
		l := snapshot.Socket{}
		l.State, l.Local, l.RecvQ, l.SendQ = sockdiag.Listen, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), port), uint32(i), 128
		l.Owners = []procscan.Owner{{PID: w.pids[i%3], FD: 3}}
		snap.Listeners = append(snap.Listeners, l)
	}
	for range 20 + r.IntN(300) {
		snap.Sockets = append(snap.Sockets, w.sock())
	}
	a := NewAnalyzer()
	var base *Baseline
	var history []*snapshot.Snapshot
	ths := []Thresholds{DefaultThresholds, {CountWarning: 5, CountCritical: 50, FDShareWarning: 0.2, AgeWarning: time.Minute, AgeCritical: time.Hour}}
	th := ths[0]
	matched := 0
	defer func() {
		if matched == 0 {
			t.Errorf("no socket was ever found in the cache: the run tests nothing")
		}
	}()
	for step := range steps {
		if step > 0 {
			snap = cloneSnap(snap)
			for range 1 + r.IntN(3) {
				randomChange(w, snap, r)
			}
		}
		history = append(history, snap)
		switch r.IntN(6) {
		case 0:
			base = nil
		case 1:
			base = NewBaseline(history[r.IntN(len(history))])
		}
		if r.IntN(5) == 0 {
			th = ths[r.IntN(len(ths))]
		}
		opt := Options{Previous: base}
		if r.IntN(6) == 0 {
			opt.PIDs = map[int]bool{w.pids[r.IntN(len(w.pids))]: true}
		}
		what := fmt.Sprintf("step %d", step)
		got := a.Analyze(snap, th, opt)
		matched += a.stats.matched
		sameReport(t, what+": Analyzer vs Analyze", got, Analyze(snap, th, opt))
		sameReport(t, what+": Analyzer vs the reference", structure(got), refAnalyze(snap, th, opt))
		for _, p := range got.Processes {
			if !reflect.DeepEqual(structureOf(Findings(p, snap)), refFindings(p, snap)) {
				t.Fatalf("%s: Findings of %d differ from the reference", what, p.PID)
			}
		}
	}
}

// randomChange changes a snapshot the way time does, or a little more.
func randomChange(w *randWorld, s *snapshot.Snapshot, r *rand.Rand) {
	switch r.IntN(12) {
	case 0, 1: // time passes (CarryInfo)
		advance(s, time.Duration(1+r.IntN(20000))*time.Millisecond)
	case 2: // time passes, measured afresh: ages move unevenly
		s.Time = s.Time.Add(time.Second)
		for i := range s.Sockets {
			if s.Sockets[i].HasInfo {
				d := uint32(r.IntN(1500))
				s.Sockets[i].Info.LastAckRecv += d
				s.Sockets[i].Info.LastDataRecv += d + uint32(r.IntN(2))
			}
		}
	case 3: // new sockets
		for range 1 + r.IntN(5) {
			at := r.IntN(len(s.Sockets) + 1)
			s.Sockets = slices.Insert(s.Sockets, at, w.sock())
		}
	case 4: // closed sockets
		for range 1 + r.IntN(5) {
			if len(s.Sockets) > 0 {
				at := r.IntN(len(s.Sockets))
				s.Sockets = slices.Delete(s.Sockets, at, at+1)
			}
		}
	case 5: // a run of closed sockets, longer than the match window
		if n := len(s.Sockets); n > 0 {
			at := r.IntN(n)
			s.Sockets = slices.Delete(s.Sockets, at, min(n, at+40+r.IntN(40)))
		}
	case 6: // read or written to: Recv-Q, timers, tcp_info
		for range 1 + r.IntN(5) {
			if len(s.Sockets) > 0 {
				x := &s.Sockets[r.IntN(len(s.Sockets))]
				switch r.IntN(4) {
				case 0:
					x.RecvQ = []uint32{0, 1, 2, 9000}[r.IntN(4)]
				case 1:
					x.Timer ^= sockdiag.TimerKeepalive
				case 2:
					x.HasInfo = !x.HasInfo
				case 3:
					x.Info.LastDataRecv += 1000
				}
			}
		}
	case 7: // reordered
		if n := len(s.Sockets); n > 1 {
			i, j := r.IntN(n), r.IntN(n)
			if r.IntN(3) == 0 {
				r.Shuffle(n, func(i, j int) { s.Sockets[i], s.Sockets[j] = s.Sockets[j], s.Sockets[i] })
			} else {
				s.Sockets[i], s.Sockets[j] = s.Sockets[j], s.Sockets[i]
			}
		}
	case 8: // a process replaced by a new one with the same pid, with new sockets
		pid := w.pids[r.IntN(len(w.pids))]
		s.Processes[pid] = w.process(pid)
		s.Sockets = slices.DeleteFunc(s.Sockets, func(x snapshot.Socket) bool { return len(x.Owners) > 0 && x.Owners[0].PID == pid })
		for range r.IntN(50) {
			x := w.sock()
			x.Owners = []procscan.Owner{{PID: pid, FD: 9}}
			s.Sockets = append(s.Sockets, x)
		}
	case 9: // a socket listed twice, and sockets in other states
		if len(s.Sockets) > 0 {
			s.Sockets = append(s.Sockets, s.Sockets[r.IntN(len(s.Sockets))])
		}
		x := w.sock()
		x.State = sockdiag.Established
		s.Sockets = append(s.Sockets, x)
	case 10: // the process's facts change or vanish
		pid := w.pids[r.IntN(len(w.pids))]
		if r.IntN(2) == 0 {
			delete(s.Processes, pid)
		} else {
			s.Processes[pid] = w.process(pid)
		}
	case 11: // many new sockets in a run
		for range 30 + r.IntN(60) {
			s.Sockets = append(s.Sockets, w.sock())
		}
	}
}

// TestFillerIsReplacer checks the advice filler against strings.Replacer
// over every line of the runtime tables.
func TestFillerIsReplacer(t *testing.T) {
	f := filler{pid: "4121", user: "sudo -u svc ", ports: " (it listens on 80, 8080)"}
	r := strings.NewReplacer("{pid}", f.pid, "{user}", f.user, "{ports}", f.ports)
	lines := []string{"", "{", "}", "{{pid}}", "{pid", "x{evict}y{unknown}{ports}{user}", "ls -l /proc/{pid}/fd | grep -c socket:"}
	for _, table := range []map[string][]string{stackSteps, closeInbound, closeOutbound, notAcceptedFix, blockedFix} {
		for _, ls := range table {
			lines = append(lines, ls...)
		}
	}
	for _, l := range lines {
		if got, want := f.fill(l), r.Replace(l); got != want {
			t.Errorf("fill(%q) = %q, want %q", l, got, want)
		}
	}
}
