package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestFDExhausted: at its fd limit, a process's queued connections are
// fd-exhausted (relief: prlimit, LimitNOFILE; destroy frees no fd), beside
// the leak that filled the table.
func TestFDExhausted(t *testing.T) {
	tests := []struct {
		name       string
		open       int
		soft, hard uint64
		cgroup     string
		want       string   // cause of the queued sockets
		steps      []string // in the next steps
	}{
		{"over the limit, hard limit higher", 65, 64, 4096, "/system.slice/app.service", CauseFDExhausted,
			[]string{"prlimit --pid 4121 --nofile=4096:4096", "systemctl edit app.service", "LimitNOFILE=4096", "closewait destroy frees the kernel memory of sockets, not fds"}},
		{"at the limit, hard = soft: needs root", 1022, 1024, 1024, "/user.slice", CauseFDExhausted,
			[]string{"sudo prlimit --pid 4121 --nofile=4096:4096", "needs root", "ulimit -n 4096"}},
		{"room left", 900, 1024, 1024, "", CauseNotAccepted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapOf("/usr/bin/java",
				many(40, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Minute}),
				many(60, sockSpec{inbound: true, age: time.Hour}))
			pr := snap.Processes[testPID]
			pr.OpenFDs, pr.FDSoft, pr.FDHard, pr.Cgroup = tt.open, tt.soft, tt.hard, tt.cgroup
			p := analyzeOne(t, snap, Options{})
			var got *Finding
			causes := map[string]bool{}
			for i, f := range p.Findings {
				causes[f.Cause] = true
				if f.Count == 40 {
					got = &p.Findings[i]
				}
			}
			if got == nil || got.Cause != tt.want || !causes[CauseMissingClose] {
				t.Fatalf("findings %v", briefs(p.Findings))
			}
			if tt.want != CauseFDExhausted {
				return
			}
			if p.Findings[0].Cause != CauseFDExhausted {
				t.Errorf("fd-exhausted is not first: %v", briefs(p.Findings))
			}
			ev := strings.Join(got.Evidence, "\n")
			for _, w := range []string{"fds open of a limit of", "EMFILE", "listener 10.0.0.5:8080 has 12 connections queued (backlog 128): the process cannot accept them without a free fd"} {
				if !strings.Contains(ev, w) {
					t.Errorf("evidence lacks %q:\n%s", w, ev)
				}
			}
			steps := strings.Join(got.NextSteps, "\n")
			for _, w := range tt.steps {
				if !strings.Contains(steps, w) {
					t.Errorf("steps lack %q:\n%s", w, steps)
				}
			}
			if strings.Contains(strings.Join(got.Fix, "\n"), "worker count") {
				t.Errorf("fix still blames the workers: %q", got.Fix)
			}
		})
	}
}
