package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/ebpfowners"
	"github.com/closewait/closewait/internal/origins"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockorigin"
	"github.com/closewait/closewait/internal/symbolize"
)

// TraceCmd is `closewait trace`.
type TraceCmd struct {
	PID       []int         `name:"pid" sep:"," placeholder:"PID" help:"Trace these processes (repeat or comma-separate); without it, every process holding CLOSE_WAIT sockets now."`
	Duration  time.Duration `default:"30s" placeholder:"DURATION" help:"How long to trace; Ctrl-C ends early and still reports."`
	JSON      bool          `help:"Print the origins as JSON (closewait help json): per origin pid, comm, count, closed, oldest_age_seconds, cause and frames; then dropped and unsymbolised_frames."`
	Max       int           `default:"20" placeholder:"N" help:"Report at most N origins, worst first (0: all)."`
	MaxFrames int           `default:"32" placeholder:"N" help:"Print at most N frames per origin (text output)."`
}

// Help is shown by closewait trace --help.
func (c *TraceCmd) Help() string {
	return `Records the user stack of every TCP socket the traced processes create, by connect()
and by accept(), then reports the stacks whose sockets are in CLOSE_WAIT when the trace
ends: the code that made the leaking sockets, named from the binaries on the host
(Go pclntab, ELF symbols and DWARF lines, a JIT's /tmp/perf-PID.map).

Only sockets created while tracing are seen: trace while the leak happens.

Examples:
  closewait trace --pid 4121                 30 seconds, then the origins of its CLOSE_WAIT sockets
  closewait trace --pid 4121 --duration 5m   trace longer, for a slow leak (Ctrl-C reports early)
  closewait trace                            every process holding CLOSE_WAIT sockets now
  closewait trace --pid 4121 --json          the origins as JSON

Needs root, or CAP_BPF and CAP_PERFMON (and CAP_SYS_PTRACE to read other users'
memory maps), on Linux 5.15 or later with BTF, in the host's pid namespace.
Exit status: 0 after reporting; 3 when it could not trace.`
}

// Run traces, then reports.
func (c *TraceCmd) Run(g *Globals) error {
	if c.Duration <= 0 {
		return fmt.Errorf("--duration %v must be positive", c.Duration)
	}
	if c.Max < 0 || c.MaxFrames < 0 {
		return errors.New("--max and --max-frames must not be negative")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pids := slices.Clone(c.PID)
	if len(pids) == 0 {
		snap, err := g.take(snapshot.Options{})
		if err != nil {
			return err
		}
		for pid := range snap.Processes {
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			fmt.Fprintln(g.stdout, "No process holds a CLOSE_WAIT socket now: name one to trace with --pid.")
			return nil
		}
	}
	rep, traced, err := g.traceOrigins(ctx, pids, c.Duration, c.Max, func(pids []int) {
		fmt.Fprintf(g.stderr, "closewait: tracing socket creation in %s for %v (Ctrl-C reports early)\n", pidList(pids), c.Duration)
	})
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(g, rep.Report)
	}
	return origins.WriteText(g.stdout, rep.Report, origins.TextOptions{Traced: traced, Duration: rep.elapsed, MaxFrames: c.MaxFrames})
}

// tracedReport is an origins report with how long the trace ran.
type tracedReport struct {
	*origins.Report
	elapsed time.Duration
}

// traceOrigins traces pids for d (or until ctx ends), then joins the
// recorded sockets with a snapshot of the CLOSE_WAIT sockets. started is
// called once tracing runs, with the pids being traced.
func (g *Globals) traceOrigins(ctx context.Context, pids []int, d time.Duration, maxOrigins int, started func([]int)) (*tracedReport, []int, error) {
	fs := procscan.NewFS(g.ProcRoot)
	slices.Sort(pids)
	pids = slices.Compact(pids)
	for _, pid := range pids {
		if pid <= 0 {
			return nil, nil, fmt.Errorf("--pid %d is not a process id", pid)
		}
		if _, err := os.Stat(fs.Path(fmt.Sprint(pid))); err != nil {
			return nil, nil, fmt.Errorf("trace: no process %d", pid)
		}
	}
	if len(pids) > sockorigin.MaxPIDs {
		return nil, nil, fmt.Errorf("trace: %d processes, at most %d can be traced at once", len(pids), sockorigin.MaxPIDs)
	}
	rec, err := openRecorder("trace")
	if err != nil {
		return nil, nil, err
	}
	defer rec.Close()
	for _, pid := range pids {
		if err := rec.AddPID(pid); err != nil {
			return nil, nil, err
		}
	}
	if started != nil {
		started(pids)
	}
	begin := time.Now()
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	elapsed := time.Since(begin)
	smp, err := rec.Sample(origins.NetNSPaths(fs, pids)...)
	if err != nil {
		return nil, nil, err
	}
	accepts := rec.Accepts()
	// Stop recording before the snapshot: nothing it reads can change now
	// but the sockets' states.
	rec.Close()
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	// The recorded sockets are known by cookie: a dump of the traced
	// processes' namespaces gives their state, queues and age; no owner
	// scan is needed.
	snap, err := g.take(snapshot.Options{NoOwners: true, NetNS: netNSInodes(fs, pids)})
	if err != nil {
		return nil, nil, err
	}
	sym := symbolize.New(g.ProcRoot)
	defer sym.Close()
	rep := origins.Build(smp, snap, sym, origins.Options{PIDs: want, Max: maxOrigins, ProcRoot: g.ProcRoot})
	rep.AcceptsTraced = accepts
	return &tracedReport{Report: rep, elapsed: elapsed}, pids, nil
}

func pidList(pids []int) string {
	if len(pids) == 1 {
		return fmt.Sprintf("process %d", pids[0])
	}
	return fmt.Sprintf("%d processes", len(pids))
}

// openRecorder loads the socket-origin recorder for cmd ("trace", "agent
// --trace"), or says in one line why it cannot.
func openRecorder(cmd string) (*sockorigin.Recorder, error) {
	if !ebpfowners.InInitPIDNS() {
		return nil, fmt.Errorf("%s: must run in the host's pid namespace (the kernel reports host pids)", cmd)
	}
	rec, err := sockorigin.Open()
	if err != nil {
		if errors.Is(err, os.ErrPermission) || os.Geteuid() != 0 {
			return nil, fmt.Errorf("%s needs root or CAP_BPF+CAP_PERFMON to load its eBPF programs (%v)", cmd, oneLine(err))
		}
		return nil, fmt.Errorf("%s: eBPF socket-origin recorder unavailable (needs Linux ≥ 5.15 with BTF): %v", cmd, oneLine(err))
	}
	return rec, nil
}

// netNSInodes returns the network namespaces of pids, by inode; nil (every
// namespace) when one cannot be read.
func netNSInodes(fs procscan.FS, pids []int) map[uint64]bool {
	out := map[uint64]bool{}
	for _, pid := range pids {
		var st unix.Stat_t
		if unix.Stat(fs.Path(strconv.Itoa(pid), "ns", "net"), &st) != nil {
			return nil
		}
		out[st.Ino] = true
	}
	return out
}
