package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/report"
)

// watchTick is a line of `watch --json` as a client reads it.
type watchTick struct {
	report.JSONReport
	Tick              int      `json:"tick"`
	GrowthPerMin      *float64 `json:"growth_per_min"`
	GrowthSpanSeconds float64  `json:"growth_span_seconds"`
	IntervalSeconds   float64  `json:"interval_seconds"`
}

// TestWatchJSONLeakGrowthAndETA runs with the eBPF change feed (the default
// where it loads: the ticks after the first build the CLOSE_WAIT set from
// the kernel's state changes) and without it (a full dump each tick).
func TestWatchJSONLeakGrowthAndETA(t *testing.T) {
	for _, feed := range []string{"ebpf", "off"} {
		t.Run("feed="+feed, func(t *testing.T) { testWatchLeak(t, feed) })
	}
}

func testWatchLeak(t *testing.T, feed string) {
	const limit = 1024 // at 150-1200 sockets a minute: EMFILE within 7 minutes, critical
	h := cwtest.Start(t, cwtest.Spec{LeakEvery: 100 * time.Millisecond, LeakMax: 200, FDLimit: limit})
	// More sockets than a normal half-close in flight (NormalHalfCloseMax,
	// all young), so that growth counts from the first baseline even on a
	// loaded host that leaks slower than planned.
	for range diagnose.NormalHalfCloseMax + 1 {
		h.Next("LEAK")
	}
	r := run(t, nil, "watch", "--json", "--interval", "500ms", "--count", "5", "--pid", strconv.Itoa(h.PID), "--feed", feed)
	// As root on a kernel with BTF (CI) the feed must load.
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	wantApplied := feed == "ebpf" && os.Geteuid() == 0 && btfErr == nil
	// At +600/min a 1024 fd limit is minutes away: critical, and --count
	// makes the last interval's status the exit code.
	if r.code != 2 {
		t.Fatalf("exit %d, want 2 (critical: fd limit minutes away)\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5 (one per interval):\n%s", len(lines), r.stdout)
	}
	var prevCW int
	for i, l := range lines {
		var tk watchTick
		if err := json.Unmarshal([]byte(l), &tk); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, l)
		}
		if tk.Version != 1 || tk.Tick != i+1 || tk.IntervalSeconds != 0.5 {
			t.Errorf("line %d: version %d tick %d interval %v", i+1, tk.Version, tk.Tick, tk.IntervalSeconds)
		}
		p := findProc(tk.JSONReport, h.PID)
		if p == nil {
			t.Fatalf("line %d: the leaking holder %d is missing:\n%s", i+1, h.PID, l)
		}
		if len(tk.Processes) != 1 {
			t.Errorf("line %d: --pid kept %d processes", i+1, len(tk.Processes))
		}
		if p.CloseWait < prevCW {
			t.Errorf("line %d: close_wait fell from %d to %d while leaking", i+1, prevCW, p.CloseWait)
		}
		prevCW = p.CloseWait
		switch {
		case i > 0 && wantApplied && tk.Scan.Changes != "applied":
			t.Errorf("line %d: scan.changes %q, want \"applied\" (the set built from the change feed)", i+1, tk.Scan.Changes)
		case feed == "off" && tk.Scan.Changes != "":
			t.Errorf("line %d: scan.changes %q with --feed off", i+1, tk.Scan.Changes)
		}
		if i == 0 {
			if p.GrowthPerMin != nil {
				t.Errorf("first line has a growth (%v) without a baseline", *p.GrowthPerMin)
			}
			continue
		}
		// 10 sockets a second is 600 a minute; allow for scheduling on a busy host.
		if p.GrowthPerMin == nil || *p.GrowthPerMin < 150 || *p.GrowthPerMin > 1200 {
			t.Errorf("line %d: growth_per_min %v, want about +600", i+1, deref(p.GrowthPerMin))
		}
		if p.FDLimit != limit {
			t.Errorf("line %d: fd_limit %d, want %d", i+1, p.FDLimit, limit)
		}
		if p.FDExhaustionETA == nil || *p.FDExhaustionETA <= 0 {
			t.Fatalf("line %d: no fd_exhaustion_eta_seconds for a growing process:\n%s", i+1, l)
		}
		want := float64(limit-p.OpenFDs) / (*p.GrowthPerMin / 60)
		if got := *p.FDExhaustionETA; got < want*0.9 || got > want*1.1 {
			t.Errorf("line %d: eta %.0fs, want (limit - open fds) / rate = %.0fs", i+1, got, want)
		}
		if p.Status != "critical" || !strings.Contains(strings.Join(p.Reasons, ";"), "fd limit in about") {
			t.Errorf("line %d: status %s, reasons %q; want critical for the fd limit ETA", i+1, p.Status, p.Reasons)
		}
		if tk.GrowthSpanSeconds <= 0 || tk.GrowthPerMin == nil {
			t.Errorf("line %d: host growth %v over %vs", i+1, deref(tk.GrowthPerMin), tk.GrowthSpanSeconds)
		}
	}
	if prevCW < 10 {
		t.Errorf("holder held %d CLOSE_WAIT sockets after 2 s of leaking 10/s", prevCW)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestWatchPlainLines(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 1})
	pid := strconv.Itoa(h.PID)
	for _, tc := range []struct {
		name string
		args []string
		note bool
	}{
		{"--plain", []string{"watch", "--plain", "--interval", "200ms", "--count", "2", "--pid", pid}, false},
		{"not a terminal", []string{"watch", "--interval", "200ms", "--count", "2", "--pid", pid}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			if tc.note != strings.Contains(r.stderr, "not a terminal") {
				t.Errorf("stderr %q: note about line mode expected %v", r.stderr, tc.note)
			}
			var hostLines, procLines int
			for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				switch {
				case strings.Contains(l, " pid="+pid+" "):
					procLines++
					for _, want := range []string{"close_wait=3", "status=ok", "fds=", "fd_limit=", "oldest="} {
						if !strings.Contains(l, want) {
							t.Errorf("process line lacks %q: %s", want, l)
						}
					}
				case strings.Contains(l, " tick="):
					hostLines++
				default:
					t.Errorf("unexpected line: %s", l)
				}
			}
			if hostLines != 2 || procLines != 2 {
				t.Errorf("%d host and %d process lines, want 2 and 2:\n%s", hostLines, procLines, r.stdout)
			}
		})
	}
}

func TestWatchBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--interval", "10ms"}, "--interval"},
		{[]string{"watch", "--count", "-1"}, "--count"},
		{[]string{"watch", "--json", "--plain"}, "--json and --plain"},
		{[]string{"watch", "--window", "1s"}, "--window"},
		{[]string{"watch", "--pid", "0"}, "--pid"},
		{[]string{"watch", "--interval", "soon"}, "--interval"},
		{[]string{"watch", "--history=", "--count", "1"}, "--history"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != 3 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want 3 and an error naming %s", r.code, r.stderr, r.stdout, tc.want)
			}
		})
	}
}

func TestReportHistoryShowsGrowthSinceLastRun(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{LeakEvery: 50 * time.Millisecond, LeakMax: 600})
	h.Next("LEAK")
	path := filepath.Join(t.TempDir(), "history.db")
	pid := strconv.Itoa(h.PID)

	type out struct {
		report.JSONReport
		History *history.JSONDelta `json:"history"`
	}
	// The holder leaks up to 600 sockets: past 100 (a slow, loaded host)
	// the status is a warning, exit 1; the history is what is tested here.
	first := run(t, nil, "--json", "--history="+path, "--pid", pid)
	var a out
	if err := json.Unmarshal([]byte(first.stdout), &a); err != nil || first.code > 1 {
		t.Fatalf("first run: exit %d, %v\n%s%s", first.code, err, first.stdout, first.stderr)
	}
	if a.History == nil || a.History.PreviousTime != "" || a.History.Path != path || len(a.History.Processes) != 1 {
		t.Fatalf("first run history: %+v", a.History)
	}
	time.Sleep(600 * time.Millisecond) // about 12 more sockets
	second := run(t, nil, "--json", "--history="+path, "--pid", pid)
	var b out
	if err := json.Unmarshal([]byte(second.stdout), &b); err != nil || second.code > 1 {
		t.Fatalf("second run: exit %d, %v\n%s%s", second.code, err, second.stdout, second.stderr)
	}
	hd := b.History
	if hd == nil || hd.PreviousTime == "" || hd.Records != 1 || hd.SinceSeconds == nil || *hd.SinceSeconds < 0.5 {
		t.Fatalf("second run history: %+v", hd)
	}
	pa, pb := findProc(a.JSONReport, h.PID), findProc(b.JSONReport, h.PID)
	if len(hd.Processes) != 1 || hd.Processes[0].PID != h.PID || hd.Processes[0].CloseWaitBefore == nil {
		t.Fatalf("second run processes: %+v", hd.Processes)
	}
	hp := hd.Processes[0]
	if *hp.CloseWaitBefore != pa.CloseWait || pb.CloseWait <= pa.CloseWait || hp.GrowthPerMin == nil || *hp.GrowthPerMin <= 0 {
		t.Errorf("holder: before %d (first run saw %d), now %d, growth %v", *hp.CloseWaitBefore, pa.CloseWait, pb.CloseWait, deref(hp.GrowthPerMin))
	}
	// The sockets of the first run were first seen then.
	if hp.FirstSeenAgeSeconds == nil || *hp.FirstSeenAgeSeconds < *hd.SinceSeconds-0.01 {
		t.Errorf("first-seen age %v, want at least the time since the last run (%v)", deref(hp.FirstSeenAgeSeconds), *hd.SinceSeconds)
	}

	text := run(t, nil, "--history="+path, "--pid", pid)
	if text.code > 1 || !strings.Contains(text.stdout, "Since the last run") || !strings.Contains(text.stdout, fmt.Sprintf(" %d: %d → ", h.PID, pb.CloseWait)) {
		t.Errorf("text report with --history:\n%s%s", text.stdout, text.stderr)
	}
}

// tmuxScreen drives the real binary in a tmux pane (a real pseudo-terminal)
// and reads the screen back as text.
type tmuxScreen struct {
	t    *testing.T
	sock string
}

func (s *tmuxScreen) cmd(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-u", "-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (s *tmuxScreen) screen() string { return s.cmd("capture-pane", "-p", "-t", "w") }

// waitFor polls the screen until ok accepts it (bounded: 10 s).
func (s *tmuxScreen) waitFor(what string, ok func(string) bool) string {
	s.t.Helper()
	var scr string
	for range 200 {
		scr = s.screen()
		if ok(scr) {
			return scr
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("screen never showed %s:\n%s", what, scr)
	return ""
}

func (s *tmuxScreen) keys(keys ...string) {
	s.cmd(append([]string{"send-keys", "-t", "w"}, keys...)...)
}

// rowIndex returns the screen line of the process row for pid, or -1.
func rowIndex(scr string, pid int) int {
	for i, l := range strings.Split(scr, "\n") {
		f := strings.Fields(strings.TrimLeft(l, "▸▾ "))
		if len(f) > 2 && f[0] == strconv.Itoa(pid) {
			return i
		}
	}
	return -1
}

func TestWatchTUI(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux (Debian package tmux) to drive the full-screen view in a pseudo-terminal")
	}
	few := cwtest.Start(t, cwtest.Spec{ReadEOF: 2})
	many := cwtest.Start(t, cwtest.Spec{Unread: 5})
	dir := t.TempDir()
	conf := filepath.Join(dir, "tmux.conf")
	os.WriteFile(conf, []byte("set -g remain-on-exit on\nset -g status off\n"), 0o644)
	s := &tmuxScreen{t: t, sock: filepath.Join(dir, "tmux.sock")}
	pids := strconv.Itoa(few.PID) + "," + strconv.Itoa(many.PID)
	// A shell records closewait's exit status: tmux's own pane_dead_status
	// stays empty where its server never reaps the child (seen in CI).
	statusFile := filepath.Join(dir, "status")
	s.cmd("-f", conf, "new-session", "-d", "-s", "w", "-x", "100", "-y", "30", "-e", "LANG=C.UTF-8", "-e", "NO_COLOR=",
		"sh", "-c", `"$0" watch --interval 300ms --pid "$1"; echo $? > "$2"`, binary, pids, statusFile)
	serverPID, _ := strconv.Atoi(strings.TrimSpace(s.cmd("display-message", "-p", "-t", "w", "#{pid}")))
	panePID, _ := strconv.Atoi(strings.TrimSpace(s.cmd("display-message", "-p", "-t", "w", "#{pane_pid}")))
	t.Cleanup(func() {
		if panePID > 0 {
			// The pane's shell leads its own process group: end it and closewait.
			syscall.Kill(-panePID, syscall.SIGKILL)
			syscall.Kill(panePID, syscall.SIGKILL)
		}
		if serverPID > 0 {
			syscall.Kill(serverPID, syscall.SIGTERM)
		}
	})

	// Render: header, both processes, default sort by CW (most first), key bar.
	scr := s.waitFor("both holders", func(scr string) bool { return rowIndex(scr, few.PID) >= 0 && rowIndex(scr, many.PID) >= 0 })
	for _, want := range []string{"closewait watch", "every 300ms", "CLOSE_WAIT", "2 procs", "CW▼", "COMMAND", "TREND", "STATUS", "q quit"} {
		if !strings.Contains(scr, want) {
			t.Errorf("screen lacks %q:\n%s", want, scr)
		}
	}
	if rowIndex(scr, many.PID) > rowIndex(scr, few.PID) {
		t.Errorf("sorted by CW, the holder of 5 should come first:\n%s", scr)
	}
	// From the second tick on, growth is measured: Δ/MIN shows a number (0).
	s.waitFor("growth measured", func(scr string) bool {
		i := rowIndex(scr, few.PID)
		if i < 0 {
			return false
		}
		l := strings.Split(scr, "\n")[i]
		return strings.Contains(l, "  0 ") && !strings.Contains(l, " - ")
	})

	t.Run("sort", func(t *testing.T) {
		s.keys("r")
		s.waitFor("reversed order", func(scr string) bool {
			return strings.Contains(scr, "CW▲") && rowIndex(scr, few.PID) < rowIndex(scr, many.PID)
		})
		s.keys("s")
		s.waitFor("the next sort column", func(scr string) bool { return strings.Contains(scr, "Δ/MIN▲") })
		s.keys("1", "r")
		s.waitFor("CW order back", func(scr string) bool {
			return strings.Contains(scr, "CW▼") && rowIndex(scr, many.PID) < rowIndex(scr, few.PID)
		})
	})

	t.Run("filter", func(t *testing.T) {
		s.keys("/")
		s.keys("-l", strconv.Itoa(few.PID))
		s.keys("Enter")
		scr := s.waitFor("only the filtered process", func(scr string) bool {
			return rowIndex(scr, few.PID) >= 0 && rowIndex(scr, many.PID) < 0
		})
		if !strings.Contains(scr, "1 of 2") {
			t.Errorf("header does not say how many match:\n%s", scr)
		}
		s.keys("Escape")
		s.waitFor("both again after esc", func(scr string) bool { return rowIndex(scr, few.PID) >= 0 && rowIndex(scr, many.PID) >= 0 })
		// A port filter: the holder's listening port matches its sockets.
		s.keys("/")
		s.keys("-l", strconv.Itoa(int(many.Listen.Port())))
		s.keys("Enter")
		s.waitFor("the holder of that port only", func(scr string) bool {
			return rowIndex(scr, many.PID) >= 0 && rowIndex(scr, few.PID) < 0
		})
		s.keys("Escape")
		s.waitFor("both again", func(scr string) bool { return rowIndex(scr, few.PID) >= 0 && rowIndex(scr, many.PID) >= 0 })
	})

	t.Run("expand", func(t *testing.T) {
		s.keys("Home", "Enter") // the first row: the holder of 5
		scr := s.waitFor("the expanded process", func(scr string) bool { return strings.Contains(scr, "REMOTE") })
		if !strings.Contains(scr, "▾") || !strings.Contains(scr, "-test.run") || !strings.Contains(scr, "→ :"+strconv.Itoa(int(many.Listen.Port()))) {
			t.Errorf("expanded view lacks the command line or the remotes of the holder:\n%s", scr)
		}
		if !strings.Contains(scr, "esc collapse") {
			t.Errorf("key bar does not follow the mode:\n%s", scr)
		}
		s.keys("Escape")
		s.waitFor("collapsed", func(scr string) bool { return !strings.Contains(scr, "REMOTE") })
	})

	t.Run("pause", func(t *testing.T) {
		s.keys("p")
		s.waitFor("paused", func(scr string) bool { return strings.Contains(scr, "paused") })
		s.keys("p")
		s.waitFor("live", func(scr string) bool { return strings.Contains(scr, "live") })
	})

	t.Run("help", func(t *testing.T) {
		s.keys("?")
		s.waitFor("help", func(scr string) bool { return strings.Contains(scr, "sort by CW, Δ/MIN") })
		s.keys("x")
		s.waitFor("table again", func(scr string) bool { return rowIndex(scr, few.PID) >= 0 })
	})

	t.Run("resize", func(t *testing.T) {
		s.cmd("resize-window", "-t", "w", "-x", "50", "-y", "20")
		scr := s.waitFor("narrow layout", func(scr string) bool { return !strings.Contains(scr, "TREND") && rowIndex(scr, few.PID) >= 0 })
		for _, l := range strings.Split(scr, "\n") {
			if w := len([]rune(l)); w > 50 {
				t.Errorf("line wider than 50 columns (%d): %q", w, l)
			}
		}
		s.cmd("resize-window", "-t", "w", "-x", "30", "-y", "20")
		s.waitFor("the too-narrow message", func(scr string) bool { return strings.Contains(scr, "too narrow") })
		s.cmd("resize-window", "-t", "w", "-x", "100", "-y", "30")
		s.waitFor("full layout", func(scr string) bool { return strings.Contains(scr, "TREND") })
	})

	s.keys("q")
	status := ""
	for range 200 {
		if b, err := os.ReadFile(statusFile); err == nil && strings.HasSuffix(string(b), "\n") {
			status = strings.TrimSpace(string(b))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status != "0" {
		t.Errorf("after q: exit status %q, want 0", status)
	}
	// The terminal is restored: the alternate screen is gone.
	if scr := s.screen(); strings.Contains(scr, "q quit") {
		t.Errorf("the live view is still on screen after q:\n%s", scr)
	}
}
