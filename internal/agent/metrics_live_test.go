package agent_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
)

// TestCloseWaitCounters: a real child leaks CLOSE_WAIT sockets between
// scans; its closewait_process_close_wait_entered_total counts exactly
// those, the host's entered counter rises by at least as many, and when the
// child exits the host's left counter rises by at least all it held.
func TestCloseWaitCounters(t *testing.T) {
	const base, leaks = 2, 3
	h := cwtest.Start(t, cwtest.Spec{Unread: base, LeakEvery: 500 * time.Millisecond, LeakMax: leaks})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	scan(t, a)
	host := func(name string) float64 {
		t.Helper()
		_, body := get(t, url+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				var f float64
				if _, err := fmt.Sscan(v, &f); err != nil {
					t.Fatalf("%s: %q", name, line)
				}
				return f
			}
		}
		t.Fatalf("/metrics has no %s", name)
		return 0
	}
	entered0 := host("closewait_close_wait_entered_total")
	first, _ := metric(t, url, "closewait_process_close_wait_sockets", h.PID) // the holder may have leaked some already
	if v, ok := metric(t, url, "closewait_process_close_wait_entered_total", h.PID); !ok || v != 0 {
		t.Errorf("first scan: entered_total{pid=%d} = %v (present %v), want 0: the sockets held before the agent started are not counted", h.PID, v, ok)
	}
	for i := 0; i < leaks; i++ {
		h.Next("LEAK")
	}
	scan(t, a)
	want := base + leaks - first
	if v, _ := metric(t, url, "closewait_process_close_wait_entered_total", h.PID); v != want || want < 1 {
		t.Errorf("after the leaks: entered_total{pid=%d} = %v, want %v (%d held now, %v at the first scan)", h.PID, v, want, base+leaks, first)
	}
	if d := host("closewait_close_wait_entered_total") - entered0; d < want {
		t.Errorf("host entered_total rose by %v, want at least %v", d, want)
	}
	left0 := host("closewait_close_wait_left_total")
	h.Stop()
	scan(t, a)
	if d := host("closewait_close_wait_left_total") - left0; d < base+leaks {
		t.Errorf("host left_total rose by %v after the holder of %d exited, want at least %d", d, base+leaks, base+leaks)
	}
	if _, ok := metric(t, url, "closewait_process_close_wait_entered_total", h.PID); ok {
		t.Errorf("pid %d exited but its entered counter is still exported", h.PID)
	}
}

// TestPromtoolCheckMetrics: the live exposition (with a real holder, so the
// per-process families are present) passes `promtool check metrics`, the
// linter of Prometheus's naming conventions.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus: apt-get install prometheus)")
	}
	cwtest.Start(t, cwtest.Spec{Unread: 2, ReadEOF: 1, FDLimit: 64})
	a := newAgent(t, agent.Options{Version: "test"})
	url := serve(t, a)
	scan(t, a)
	scan(t, a)
	code, body := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"closewait_build_info{", "closewait_close_wait_entered_total ", `closewait_sockets{state="close_wait"}`, "closewait_scans_total 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
