package watch

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/cwtest"
)

func TestSparklineShortSigned(t *testing.T) {
	for _, tc := range []struct {
		vals  []int
		w     int
		ascii bool
		want  string
	}{
		{nil, 8, false, ""},
		{[]int{0, 0, 0}, 8, false, "▁▁▁"},
		{[]int{5, 5}, 8, false, "▅▅"},
		{[]int{0, 7}, 8, false, "▁█"},
		{[]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 4, false, "▁▃▅█"},
		{[]int{0, 7}, 8, true, "_@"},
	} {
		if got := sparkline(tc.vals, tc.w, tc.ascii); got != tc.want {
			t.Errorf("sparkline(%v, %d, %v) = %q, want %q", tc.vals, tc.w, tc.ascii, got, tc.want)
		}
	}
	var got []string
	for _, n := range []int{0, 999, 1000, 9949, 9950, 58113, 999499, 1000000, 12500000} {
		got = append(got, short(n))
	}
	if diff := cmp.Diff([]string{"0", "999", "1.0k", "9.9k", "10k", "58k", "999k", "1.0M", "13M"}, got); diff != "" {
		t.Errorf("short (-want +got):\n%s", diff)
	}
	got = nil
	for _, v := range []float64{0, 0.04, 0.5, -3, 12.4, 198.6, -42} {
		got = append(got, signed(v))
	}
	if diff := cmp.Diff([]string{"0", "0", "+0.5", "-3", "+12", "+199", "-42"}, got); diff != "" {
		t.Errorf("signed (-want +got):\n%s", diff)
	}
}

// liveTick takes two ticks of the real host, limited to the given holders.
func liveTick(t *testing.T, pids ...int) *Tick {
	t.Helper()
	s := newLiveSampler(1)
	sel := map[int]bool{}
	for _, p := range pids {
		sel[p] = true
	}
	s.SetPIDs(sel)
	var tk *Tick
	for range 2 {
		var err error
		if tk, err = s.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if len(tk.Report.Processes) != len(pids) {
		t.Fatalf("tick has %d processes, want %d", len(tk.Report.Processes), len(pids))
	}
	return tk
}

func TestSamplerGrowthAndOutputs(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1, LeakEvery: 20 * time.Millisecond, LeakMax: 800})
	h.Next("LEAK")
	s := newLiveSampler(1)
	s.SetPIDs(map[int]bool{h.PID: true})
	first, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if p := first.Report.Processes[0]; p.Growth != nil || first.Span != 0 {
		t.Errorf("first tick has growth %+v over %v", p.Growth, first.Span)
	}
	for range 5 {
		h.Next("LEAK")
	}
	second, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	p := second.Report.Processes[0]
	if p.Growth == nil || p.Growth.Entered < 5 || p.Growth.NetPerMin <= 0 || second.Span <= 0 {
		t.Fatalf("second tick: growth %+v over %v, want at least 5 entered", p.Growth, second.Span)
	}
	if tr := second.Trends[h.PID]; len(tr) != 2 || tr[1] <= tr[0] {
		t.Errorf("trend %v, want two rising counts", tr)
	}

	var buf bytes.Buffer
	if err := WriteJSON(&buf, second, time.Second); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("not one JSON line (%v): %s", err, buf.String())
	}
	procs := line["processes"].([]any)
	if gp := procs[0].(map[string]any)["growth_per_min"]; gp == nil || gp.(float64) <= 0 {
		t.Errorf("JSON process growth_per_min = %v", gp)
	}
	buf.Reset()
	if err := WritePlain(&buf, second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "pid="+strconv.Itoa(h.PID)+" ") || !strings.Contains(buf.String(), "growth_per_min=+") {
		t.Errorf("plain lines:\n%s", buf.String())
	}
}

func press(m *Model, keys ...string) {
	for _, k := range keys {
		var msg tea.KeyPressMsg
		switch k {
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "esc":
			msg = tea.KeyPressMsg{Code: tea.KeyEscape}
		default:
			msg = tea.KeyPressMsg{Code: rune(k[0]), Text: k}
		}
		m.Update(msg)
	}
}

func screenOf(m *Model) string { return ansi.Strip(m.render()) }

func TestModelLayoutAndKeys(t *testing.T) {
	few := cwtest.Start(t, cwtest.Spec{ReadEOF: 1})
	many := cwtest.Start(t, cwtest.Spec{Unread: 3})
	tk := liveTick(t, few.PID, many.PID)
	m := NewModel(UIOptions{Interval: time.Second})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 24})
	m.Update(TickMsg{Tick: tk})
	row := func(scr string, pid int) int {
		for i, l := range strings.Split(scr, "\n") {
			if f := strings.Fields(strings.TrimLeft(l, "▸▾ ")); len(f) > 2 && f[0] == strconv.Itoa(pid) {
				return i
			}
		}
		return -1
	}

	for _, w := range []int{120, 100, 80, 60, 45, 40} {
		m.Update(tea.WindowSizeMsg{Width: w, Height: 24})
		scr := screenOf(m)
		lines := strings.Split(scr, "\n")
		if len(lines) != 24 {
			t.Errorf("width %d: %d lines, want the terminal's 24", w, len(lines))
		}
		for _, l := range lines {
			if ansi.StringWidth(l) > w {
				t.Errorf("width %d: line of %d columns: %q", w, ansi.StringWidth(l), l)
			}
		}
		if row(scr, few.PID) < 0 || row(scr, many.PID) < 0 {
			t.Errorf("width %d: a holder is missing:\n%s", w, scr)
		}
		if hasTrend := strings.Contains(scr, "TREND"); hasTrend != (w >= 80) {
			t.Errorf("width %d: TREND shown %v", w, hasTrend)
		}
	}
	m.Update(tea.WindowSizeMsg{Width: 39, Height: 24})
	if scr := screenOf(m); !strings.Contains(scr, "too narrow") {
		t.Errorf("39 columns: %q", scr)
	}
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 24})

	if scr := screenOf(m); row(scr, many.PID) > row(scr, few.PID) {
		t.Errorf("default sort by CW: the holder of 3 first:\n%s", scr)
	}
	press(m, "r")
	if scr := screenOf(m); row(scr, many.PID) < row(scr, few.PID) || !strings.Contains(scr, "CW▲") {
		t.Errorf("reversed:\n%s", scr)
	}
	press(m, "r", "/")
	press(m, strings.Split(strconv.Itoa(few.PID), "")...)
	press(m, "enter")
	if scr := screenOf(m); row(scr, many.PID) >= 0 || row(scr, few.PID) < 0 {
		t.Errorf("filter by pid:\n%s", scr)
	}
	press(m, "esc", "enter")
	scr := screenOf(m)
	if !strings.Contains(scr, "REMOTE") || !strings.Contains(scr, "▾ ") {
		t.Errorf("expanded:\n%s", scr)
	}
	// The selection follows its process through a new tick.
	sel := m.selectedPID
	m.Update(TickMsg{Tick: liveTick(t, few.PID, many.PID)})
	if m.selectedPID != sel || m.expandedPID != sel {
		t.Errorf("after a tick: selected %d expanded %d, want %d", m.selectedPID, m.expandedPID, sel)
	}
	press(m, "p")
	paused := m.shown
	m.Update(TickMsg{Tick: liveTick(t, few.PID, many.PID)})
	if m.shown != paused || !strings.Contains(screenOf(m), "paused") {
		t.Error("a tick replaced the paused screen")
	}
	press(m, "p")
	if m.shown == paused {
		t.Error("resuming did not show the newest tick")
	}
	if _, cmd := m.Update(tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}); cmd == nil || !m.Interrupted {
		t.Error("Ctrl-C did not quit")
	}
}

// TestModelCommandLines: c shows each process's command line in the
// COMMAND column (wider, as the terminal allows) and c again its name.
func TestModelCommandLines(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	tk := liveTick(t, h.PID)
	p := tk.Report.Processes[0]
	if p.Process == nil || p.Process.Cmdline == "" || p.Process.Cmdline == p.Process.Comm {
		t.Fatalf("holder %d: command line %+v, want one beside its name", h.PID, p.Process)
	}
	m := NewModel(UIOptions{Interval: time.Second})
	m.Update(tea.WindowSizeMsg{Width: 250, Height: 24})
	m.Update(TickMsg{Tick: tk})
	line := func(scr string) string {
		for _, l := range strings.Split(scr, "\n") {
			if f := strings.Fields(strings.TrimLeft(l, "▸▾ ")); len(f) > 2 && f[0] == strconv.Itoa(h.PID) {
				return l
			}
		}
		t.Fatalf("holder %d not on screen:\n%s", h.PID, scr)
		return ""
	}
	want := p.Process.Cmdline
	if r := []rune(want); len(r) > 60 {
		want = string(r[:60]) // the start is what must show; a long one is cut at the edge
	}
	scr := screenOf(m)
	if l := line(scr); strings.Contains(l, want) || strings.Contains(scr, "COMMAND LINE") {
		t.Errorf("command line shown before c:\n%s", scr)
	}
	press(m, "c")
	scr = screenOf(m)
	if l := line(scr); !strings.Contains(l, want) || !strings.Contains(scr, "COMMAND LINE") {
		t.Errorf("after c, the row does not show %q:\n%s", want, scr)
	}
	for _, l := range strings.Split(scr, "\n") {
		if ansi.StringWidth(l) > 250 {
			t.Errorf("line of %d columns: %q", ansi.StringWidth(l), l)
		}
	}
	press(m, "c")
	if l := line(screenOf(m)); strings.Contains(l, want) {
		t.Errorf("c again still shows the command line: %q", l)
	}
}

// TestNarrowTerminalMessageFits (issue 16 item 16): below MinWidth the view
// says the terminal is too narrow in lines that fit the width.
func TestNarrowTerminalMessageFits(t *testing.T) {
	m := NewModel(UIOptions{Interval: time.Second})
	for w := 1; w < MinWidth; w++ {
		m.Update(tea.WindowSizeMsg{Width: w, Height: 24})
		scr := m.render()
		for _, l := range strings.Split(scr, "\n") {
			if ansi.StringWidth(l) > w {
				t.Errorf("width %d: line %q is wider", w, l)
			}
		}
		if joined := strings.Join(strings.Fields(scr), " "); w >= 10 && !strings.Contains(joined, "too narrow") {
			t.Errorf("width %d: %q does not say the terminal is too narrow", w, scr)
		}
		if w >= 35 && !strings.Contains(strings.Join(strings.Fields(scr), " "), "need ≥ 40 columns") {
			t.Errorf("width %d: %q does not say how wide it must be", w, scr)
		}
	}
}
