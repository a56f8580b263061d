package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/alecthomas/kong"
	"github.com/charmbracelet/colorprofile"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/watch"
)

// WatchCmd is `closewait watch`.
type WatchCmd struct {
	HostFlags
	ThresholdFlags
	ScanFlags
	SecretsFlag
	FeedFlag
	ProgramFlags
	NetNSFlag
	PID        []int         `name:"pid" short:"p" sep:"," placeholder:"PID" help:"Only these processes."`
	Interval   time.Duration `short:"d" default:"2s" placeholder:"DURATION" help:"Time between snapshots (default 2s, at least 100ms; -d as top's delay)."`
	Iterations int           `short:"n" placeholder:"N" help:"Stop after N intervals (0: run until q or Ctrl-C; -n as top's). The exit code is then the last interval's status."`
	Count      int           `name:"count" hidden:"" placeholder:"N" help:"Old name of --iterations."`
	Window     time.Duration `default:"1m" placeholder:"DURATION" help:"Span over which growth per minute and the time to the fd limit are measured (default 1m)."`
	JSON       bool          `short:"j" help:"Print one JSON object per interval (NDJSON): the report contract plus growth_per_min and fd_exhaustion_eta_seconds per process."`
	Plain      bool          `help:"Print plain lines (one per process per interval) instead of the full-screen view; the default when not on a terminal."`
	Color      string        `default:"auto" enum:"auto,always,never" help:"Colour: auto (terminal and no NO_COLOR), always, never."`
	ASCII      bool          `name:"ascii" help:"Draw trends and marks in ASCII (automatic when the locale is not UTF-8)."`
	History    HistoryFlag   `help:"Also record every interval in the history store (--history uses the default path; --history=PATH another)." placeholder:"PATH"`
}

// Help is shown by closewait watch --help: the live view's keys and columns.
func (c *WatchCmd) Help() string {
	var b strings.Builder
	b.WriteString("Keys of the live view (on a terminal, without --json or --plain):\n")
	for _, k := range watch.Keys {
		b.WriteString("  " + k + "\n")
	}
	b.WriteString("\nColumns:\n")
	for _, l := range watch.Columns {
		b.WriteString("  " + l + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// Run watches until the count is reached, q, Ctrl-C or SIGTERM.
func (c *WatchCmd) Run(g *Globals) error {
	longRunningGC()
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	if c.Interval < 100*time.Millisecond {
		return fmt.Errorf("--interval %v is too short (at least 100ms)", c.Interval)
	}
	if c.Iterations == 0 {
		c.Iterations = c.Count // the old name, kept hidden
	}
	if c.Iterations < 0 {
		return fmt.Errorf("--iterations %d must not be negative", c.Iterations)
	}
	if c.Window < c.Interval {
		return fmt.Errorf("--window %v must be at least the interval %v", c.Window, c.Interval)
	}
	if c.JSON && c.Plain {
		return errors.New("--json and --plain exclude each other")
	}
	if err := c.ProgramFlags.check(); err != nil {
		return err
	}
	if err := g.checkPIDs(c.PID); err != nil {
		return err
	}
	ns, err := c.namespaces()
	if err != nil {
		return err
	}
	var pids map[int]bool
	if len(c.PID) > 0 {
		pids = map[int]bool{}
		for _, p := range c.PID {
			pids[p] = true
		}
	}
	opt := history.SamplerOptions{
		Snapshot:   snapshot.Options{CompleteScan: c.FullScan, ForceProcNet: c.ProcNet, OwnerSource: g.OwnerSource(true), NetNS: ns},
		Take:       g.takeAfter,
		Changes:    g.changeFeed(c.Feed, c.Interval),
		Thresholds: th, PIDs: pids, Window: c.Window,
		// A full check about once a minute; between them a reused owner is
		// trusted while its process lives (one check per process, not per
		// socket) and tcp_info is carried from the previous tick (looked up
		// for new sockets).
		FullCheckEvery: max(1, int(time.Minute/c.Interval)),
		ReleaseMemory:  true,
	}
	if c.ProgramFlags.set() {
		opt.Select = func(snap *snapshot.Snapshot, pids map[int]bool) map[int]bool {
			return c.ProgramFlags.pids(snap, g.procFS(), pids)
		}
	}
	if c.History.Set {
		st, err := c.History.Open()
		if err != nil {
			return err
		}
		defer st.Close()
		opt.Record = st
	}
	sampler := history.NewSampler(opt)

	ctx, stop, signalled := signalContext()
	defer stop()

	tui := !c.JSON && !c.Plain
	if tui && (!isTerminal(os.Stdin) || terminalWidth(g.stdout) == 0 || os.Getenv("TERM") == "dumb") {
		tui = false
		fmt.Fprintln(g.stderr, "closewait: not a terminal: printing one line per process per interval (--plain)")
	}
	if tui {
		return c.runTUI(ctx, g, sampler, signalled)
	}

	var last *watch.Tick
	err = sampler.Run(ctx, c.Interval, c.Iterations, func(t *watch.Tick) error {
		last = t
		if c.JSON {
			return watch.WriteJSON(g.stdout, t, c.Interval)
		}
		return watch.WritePlain(g.stdout, t)
	}, func(err error) { fmt.Fprintf(g.stderr, "closewait: %v\n", err) })
	if err != nil {
		return err
	}
	if code := signalled(); code != 0 {
		return exitCode(code)
	}
	if c.Iterations > 0 && last != nil {
		return exitCode(last.Report.Status.ExitCode())
	}
	return nil
}

func (c *WatchCmd) runTUI(ctx context.Context, g *Globals, sampler *history.Sampler, signalled func() int) error {
	ascii := c.ASCII || !utf8Locale()
	m := watch.NewModel(watch.UIOptions{Interval: c.Interval, ASCII: ascii})
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithOutput(g.stdout)}
	if !useColor(g.stdout, c.Color) {
		opts = append(opts, tea.WithColorProfile(colorprofile.Ascii)) // bold and reverse, no colour
	}
	p := tea.NewProgram(m, opts...)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- sampler.Run(runCtx, c.Interval, c.Iterations, func(t *watch.Tick) error {
			p.Send(watch.TickMsg{Tick: t})
			return nil
		}, func(err error) { p.Send(watch.ErrMsg{Err: err}) })
	}()
	go func() {
		// A first-tick error ends the sampler: show it until the user quits.
		if err := <-done; err != nil {
			p.Send(watch.ErrMsg{Err: err})
		}
	}()
	_, err := p.Run()
	cancel()
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("watch: %w", err)
	}
	if code := signalled(); code != 0 {
		return exitCode(code)
	}
	if m.Interrupted { // Ctrl-C in the full-screen view: as SIGINT
		return exitCode(128 + int(syscall.SIGINT))
	}
	return nil
}

// signalContext returns a context cancelled by SIGINT or SIGTERM, and a
// function returning the shell's exit code for the signal that came (128 +
// its number: 130 for SIGINT, 143 for SIGTERM), or 0 before any.
func signalContext() (ctx context.Context, stop func(), signalled func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	var got atomic.Int32
	go func() {
		select {
		case s := <-ch:
			got.Store(int32(s.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()
	stop = func() {
		signal.Stop(ch)
		cancel()
	}
	signalled = func() int {
		if n := got.Load(); n != 0 {
			return 128 + int(n)
		}
		return 0
	}
	return ctx, stop, signalled
}

func isTerminal(f *os.File) bool {
	return terminalWidth(f) > 0
}

// utf8Locale reports whether the locale's character set is UTF-8.
func utf8Locale() bool {
	for _, v := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if s := os.Getenv(v); s != "" {
			s = strings.ToLower(s)
			return strings.Contains(s, "utf-8") || strings.Contains(s, "utf8")
		}
	}
	return true // no locale set: modern terminals are UTF-8
}

// HistoryFlag is a flag with an optional value: --history uses the default
// store path, --history=PATH another one.
type HistoryFlag struct {
	Set  bool
	Path string
	// Default is set when Path is history.DefaultPath(), whose directory
	// is created when missing (a path the user names must exist).
	Default bool
}

// Decode implements kong.MapperValue: the value is taken only when given
// with "=", so that --history alone is a switch.
func (h *HistoryFlag) Decode(ctx *kong.DecodeContext) error {
	h.Set = true
	if next := ctx.Scan.Peek(); next.Type != kong.FlagValueToken {
		// --history PATH (with a space) names the file when the next word
		// looks like one: a path with a '/' or a file name with an
		// extension. Neither report nor watch takes arguments, so any other
		// word would be an error anyway: say to use '='.
		if v, ok := next.Value.(string); ok && (next.Type == kong.UntypedToken || next.Type == kong.PositionalArgumentToken) && !strings.HasPrefix(v, "-") {
			if !strings.ContainsAny(v, "/.") {
				return fmt.Errorf("a path goes with '=' (--history=%s), or use --history alone for the default store", v)
			}
			ctx.Scan.Pop()
			h.Path, h.Default = v, false
			return nil
		}
		h.Path, h.Default = history.DefaultPath(), true
		return nil
	}
	var v string
	if err := ctx.Scan.PopValueInto("path", &v); err != nil {
		return err
	}
	if v == "" {
		return errors.New("--history= needs a path (or use --history alone for the default)")
	}
	h.Path, h.Default = v, false
	return nil
}

// IsBool tells kong that --history takes no separate argument.
func (h *HistoryFlag) IsBool() bool { return true }

// Open opens the store the flag names.
func (h *HistoryFlag) Open() (*history.Store, error) {
	st, err := history.Open(h.Path, history.Options{CreateDir: h.Default})
	if err != nil {
		return nil, historyError(err)
	}
	return st, nil
}

// historyError adds to a damaged store's error what to do about it.
func historyError(err error) error {
	if errors.Is(err, history.ErrDamaged) {
		return fmt.Errorf("%w; the file was left as it is: see `closewait history --help` to check or repair it", err)
	}
	return err
}

// recordHistory compares a report with the store's last record, then
// records it. It returns the comparison.
func (h *HistoryFlag) recordHistory(r *diagnose.Report) (*history.Delta, error) {
	st, err := h.Open()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	d, err := st.Compare(r)
	if err != nil {
		return nil, err
	}
	if err := st.Record(r); err != nil {
		return nil, err
	}
	return d, nil
}

// writeReportWithHistory prints the report with what changed since the
// last run: a "history" object in JSON, a few lines of text otherwise.
func writeReportWithHistory(g *Globals, r *diagnose.Report, d *history.Delta, asJSON bool, textOpt report.TextOptions) error {
	if asJSON {
		out := struct {
			*report.JSONReport
			History *history.JSONDelta `json:"history"`
		}{report.BuildJSON(r), d.JSON(r.Snapshot.Time)}
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if err := report.WriteText(g.stdout, r, textOpt); err != nil {
		return err
	}
	return d.WriteText(g.stdout, r)
}
