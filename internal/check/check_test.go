package check

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestReadSysctls(t *testing.T) {
	got, err := ReadSysctls("testdata/short-keepalive")
	if err != nil {
		t.Fatal(err)
	}
	want := &Sysctls{FileMax: 2466183, NrOpen: 1048576, FileAllocated: 146089, HasFileNr: true,
		KeepaliveTime: 30 * time.Second, KeepaliveIntvl: 5 * time.Second, KeepaliveProbes: 3, FinTimeout: 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got, err = ReadSysctls("testdata/missing")
	if err != nil {
		t.Fatal(err)
	}
	wantMissing := []string{`net.ipv4.tcp_keepalive_probes: "lots" is not a number`, "net.ipv4.tcp_fin_timeout: no such file"}
	if diff := cmp.Diff(wantMissing, got.Missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if _, err := ReadSysctls("testdata/nope"); err == nil {
		t.Error("no error for a missing root")
	}
}

// TestReview judges fake /proc/sys trees with constructed holders.
func TestReview(t *testing.T) {
	java := Holder{PID: 4121, Comm: "java", CloseWait: 900, OpenFDs: 950, FDSoft: 1024, FDHard: 4096}
	py := Holder{PID: 977, Comm: "python3", CloseWait: 3, Keepalive: 2, OpenFDs: 40, FDSoft: 1024, FDHard: 1024}
	big := Holder{PID: 55, Comm: "envoy", CloseWait: 10, OpenFDs: 100, FDSoft: 1048576, FDHard: 1048576}
	tests := []struct {
		name         string
		root         string
		holders      []Holder
		cw, ka       int
		status       diagnose.Status
		holderStatus map[int]diagnose.Status
		settings     map[string]diagnose.Status // settings whose status is not ok
		matters      map[string]bool
		words        []string // in the explanations, advice and summary
	}{
		{
			name: "defaults, nothing wrong, no keepalive", root: "testdata/defaults",
			holders: []Holder{py}, cw: 3, ka: 0, status: diagnose.OK,
			holderStatus: map[int]diagnose.Status{977: diagnose.OK},
			matters:      map[string]bool{FileMax: true, FileNr: true, NrOpen: false, KeepaliveTime: false, KeepaliveIntvl: false, KeepaliveProbes: false, FinTimeout: false},
			words:        []string{"none of the 3 CLOSE_WAIT sockets has SO_KEEPALIVE", "never CLOSE_WAIT", "the 1 process holding", "application has to call close()"},
		},
		{
			name: "a process near its fd limit", root: "testdata/defaults",
			holders: []Holder{py, java}, cw: 903, ka: 2, status: diagnose.Critical,
			holderStatus: map[int]diagnose.Status{4121: diagnose.Critical, 977: diagnose.OK},
			matters:      map[string]bool{KeepaliveTime: true, FinTimeout: false},
			words:        []string{"950 open fds of its soft limit 1024 (93%), 900 of them CLOSE_WAIT", "critical: fds at 93% of the limit > 50%", "warning: 900 CLOSE_WAIT sockets > 100", "prlimit --pid 4121 --nofile=4096:4096", "raised up to the hard limit 4096", "2 of 903 CLOSE_WAIT sockets whose application set SO_KEEPALIVE", "fd stays open"},
		},
		{
			name: "low file-max, nearly full", root: "testdata/low-file-max",
			holders: []Holder{py}, cw: 3, status: diagnose.Warning,
			settings: map[string]diagnose.Status{FileNr: diagnose.Warning},
			words:    []string{"96% of fs.file-max", "ENFILE"},
		},
		{
			name: "file-max below a holder's fd limit", root: "testdata/low-file-max",
			holders: []Holder{big}, cw: 10, status: diagnose.Warning,
			holderStatus: map[int]diagnose.Status{55: diagnose.OK},
			settings:     map[string]diagnose.Status{FileNr: diagnose.Warning, FileMax: diagnose.Warning},
			words:        []string{"above fs.file-max 8192", "its hard limit is at fs.nr_open (1048576)", "lower than the fd limit of a process holding CLOSE_WAIT (1048576)"},
		},
		{
			name: "short keepalive with SO_KEEPALIVE sockets", root: "testdata/short-keepalive",
			holders: []Holder{py}, cw: 3, ka: 2, status: diagnose.OK,
			matters: map[string]bool{KeepaliveTime: true, KeepaliveIntvl: true, KeepaliveProbes: true, FinTimeout: false},
			words:   []string{"at 30s it is short", "probes x intvl = 45s", "workaround, not a fix", "Keepalive matters for 2 CLOSE_WAIT sockets"},
		},
		{
			name: "short keepalive, no SO_KEEPALIVE socket", root: "testdata/short-keepalive",
			holders: []Holder{py}, cw: 3, ka: 0, status: diagnose.OK,
			matters: map[string]bool{KeepaliveTime: false},
			words:   []string{"does not matter here", "at 30s it is short"},
		},
		{
			name: "unreadable settings", root: "testdata/missing",
			holders: []Holder{{PID: 9, Comm: "x", CloseWait: 1}}, cw: 1, status: diagnose.OK,
			matters: map[string]bool{FinTimeout: false, KeepaliveProbes: false},
			words:   []string{"could not be read", "Could not read 2 settings", "fd limit could not be read"},
		},
		{
			name: "open fds unreadable", root: "testdata/defaults",
			holders: []Holder{{PID: 7, Comm: "svc", CloseWait: 900, FDSoft: 1024, FDHard: 1024, FDsUnknown: true}}, cw: 900, status: diagnose.Critical,
			holderStatus: map[int]diagnose.Status{7: diagnose.Critical},
			words:        []string{"could not be counted", "88% of the limit at least"},
		},
		{
			name: "no CLOSE_WAIT", root: "testdata/defaults", status: diagnose.OK,
			words: []string{"No CLOSE_WAIT sockets now"},
		},
		{
			name: "unlimited fd limit", root: "testdata/defaults",
			holders: []Holder{{PID: 8, Comm: "db", CloseWait: 5, OpenFDs: 5000, FDSoft: procscan.Unlimited, FDHard: procscan.Unlimited}}, cw: 5, status: diagnose.OK,
			words: []string{"no fd limit (unlimited)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys, err := ReadSysctls(tt.root)
			if err != nil {
				t.Fatal(err)
			}
			// The "short keepalive" line only applies to the short-keepalive root.
			r := Review(sys, tt.holders, tt.cw, tt.ka, Thresholds{})
			if r.Status != tt.status {
				t.Errorf("status %v, want %v", r.Status, tt.status)
			}
			gotH := map[int]diagnose.Status{}
			for _, h := range r.Holders {
				gotH[h.PID] = h.Status
			}
			if tt.holderStatus != nil {
				if diff := cmp.Diff(tt.holderStatus, gotH); diff != "" {
					t.Errorf("holder statuses (-want +got):\n%s", diff)
				}
			}
			gotS := map[string]diagnose.Status{}
			for _, s := range r.Settings {
				if s.Status != diagnose.OK {
					gotS[s.Name] = s.Status
				}
				if want, ok := tt.matters[s.Name]; ok && s.Matters != want {
					t.Errorf("%s matters %v, want %v", s.Name, s.Matters, want)
				}
			}
			if tt.settings == nil {
				tt.settings = map[string]diagnose.Status{}
			}
			if diff := cmp.Diff(tt.settings, gotS); diff != "" {
				t.Errorf("setting statuses (-want +got):\n%s", diff)
			}
			if len(r.Settings) != 7 {
				t.Errorf("%d settings, want 7", len(r.Settings))
			}
			var text bytes.Buffer
			if err := WriteText(&text, r, Meta{Host: "web-03", Time: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.words {
				if !strings.Contains(text.String(), w) {
					t.Errorf("text lacks %q:\n%s", w, text.String())
				}
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, r, Meta{Host: "web-03", Time: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
			var doc JSONCheck
			if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Version != 1 || doc.Status != tt.status.String() || len(doc.Settings) != 7 || len(doc.Processes) != len(tt.holders) || doc.CloseWait != tt.cw || doc.Keepalive != tt.ka {
				t.Errorf("json: %+v", doc)
			}
		})
	}
	// The short-keepalive words must not appear for the default 7200 s.
	sys, _ := ReadSysctls("testdata/defaults")
	r := Review(sys, []Holder{py}, 3, 2, Thresholds{})
	for _, s := range r.Settings {
		if strings.Contains(s.Explanation, "short") {
			t.Errorf("default keepalive called short: %s", s.Explanation)
		}
	}
}

func TestHolders(t *testing.T) {
	cw := func(ka bool, pids ...int) snapshot.Socket {
		s := snapshot.Socket{}
		s.State = sockdiag.CloseWait
		if ka {
			s.Timer = sockdiag.TimerKeepalive
		}
		for _, p := range pids {
			s.Owners = append(s.Owners, procscan.Owner{PID: p, FD: 3})
		}
		return s
	}
	est := cw(true, 1)
	est.State = sockdiag.Established
	snap := &snapshot.Snapshot{
		Sockets: []snapshot.Socket{cw(true, 1), cw(false, 1), cw(true, 1, 2), cw(true), est},
		Processes: map[int]*procscan.Process{
			1: {PID: 1, Comm: "a", OpenFDs: 10, FDSoft: 100, FDHard: 200},
			2: {PID: 2, Comm: "b", FDSoft: 1024, FDHard: 1024, Missing: []string{"open fds: permission denied"}},
		},
	}
	got, n, ka := Holders(snap, nil)
	want := []Holder{
		{PID: 1, Comm: "a", CloseWait: 3, Keepalive: 2, OpenFDs: 10, FDSoft: 100, FDHard: 200},
		{PID: 2, Comm: "b", CloseWait: 1, Keepalive: 1, FDSoft: 1024, FDHard: 1024, FDsUnknown: true},
	}
	if diff := cmp.Diff(want, got); diff != "" || n != 4 || ka != 3 {
		t.Errorf("holders (-want +got):\n%s\nclose_wait %d keepalive %d, want 4 and 3", diff, n, ka)
	}
	got, n, ka = Holders(snap, map[int]bool{2: true})
	if len(got) != 1 || got[0].PID != 2 || n != 4 || ka != 3 {
		t.Errorf("--pid 2: %+v %d %d", got, n, ka)
	}
}

// TestCheckAgreesWithReport: check judges each process exactly as the
// report does, with the same thresholds.
func TestCheckAgreesWithReport(t *testing.T) {
	sys, err := ReadSysctls("testdata/defaults")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(pid int, n int, age time.Duration) []snapshot.Socket {
		out := make([]snapshot.Socket, n)
		for i := range out {
			out[i].State = sockdiag.CloseWait
			out[i].HasInfo = true
			out[i].Info.LastAckRecv = uint32(age.Milliseconds())
			out[i].Info.LastDataRecv = uint32(age.Milliseconds())
			out[i].Owners = []procscan.Owner{{PID: pid, FD: 10 + i}}
		}
		return out
	}
	snap := &snapshot.Snapshot{Processes: map[int]*procscan.Process{
		1: {PID: 1, Comm: "ok", OpenFDs: 50, FDSoft: 1024, FDHard: 1024},
		2: {PID: 2, Comm: "many", OpenFDs: 300, FDSoft: 1024, FDHard: 1024},
		3: {PID: 3, Comm: "full", OpenFDs: 700, FDSoft: 1024, FDHard: 4096},
		4: {PID: 4, Comm: "old", OpenFDs: 20, FDSoft: 1024, FDHard: 1024},
	}}
	for _, socks := range [][]snapshot.Socket{mk(1, 3, time.Second), mk(2, 150, time.Minute), mk(3, 20, time.Minute), mk(4, 2, time.Hour)} {
		snap.Sockets = append(snap.Sockets, socks...)
	}
	for _, th := range []diagnose.Thresholds{diagnose.DefaultThresholds, {CountWarning: 10, CountCritical: 100, FDShareWarning: 0.2, AgeWarning: time.Minute}} {
		rep := diagnose.Analyze(snap, th, diagnose.Options{})
		holders, cw, ka := Holders(snap, nil)
		r := Review(sys, holders, cw, ka, Thresholds{Process: th})
		want := map[int]diagnose.Status{}
		for _, p := range rep.Processes {
			want[p.PID] = p.Status
		}
		got := map[int]diagnose.Status{}
		for _, h := range r.Holders {
			got[h.PID] = h.Status
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("thresholds %+v: check and report disagree (-report +check):\n%s", th, diff)
		}
	}
}
