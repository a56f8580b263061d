package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/origins"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
)

// ExplainCmd is `closewait explain PID`.
type ExplainCmd struct {
	HostFlags
	ThresholdFlags
	ScanFlags
	SecretsFlag
	PID    string        `arg:"" optional:"" placeholder:"PID" help:"The process to explain; without it, the worst process holding CLOSE_WAIT sockets."`
	JSON   bool          `short:"j" help:"Print the process's object of the JSON contract (as in closewait --json)."`
	Sample time.Duration `placeholder:"DURATION" help:"Take two snapshots this far apart and add growth per minute and the time until the fd limit (e.g. 10s)."`
	Color  string        `default:"auto" enum:"auto,always,never" help:"Colour the status word: auto, always, never."`
	Peek   bool          `help:"Show the first bytes (up to 120) the peer sent that the process never read, for each finding with unread data: application data, read without consuming it (pidfd_getfd and MSG_PEEK; needs ptrace access, e.g. root)."`
	Trace  time.Duration `placeholder:"DURATION" help:"First trace the process's socket creation this long (eBPF, as closewait trace) and add the top origins: the code that made its CLOSE_WAIT sockets."`

	origins *tracedReport
}

// Help is shown by closewait explain --help.
func (c *ExplainCmd) Help() string {
	return `Examples:
  closewait explain 4121               what is leaking, since when, why, what to run next
  closewait explain 4121 --sample 10s  the same with growth per minute and the time to the fd limit
  closewait explain 4121 --json        the process's JSON object
  closewait explain 4121 --peek        also show the unread bytes the peers sent (their last words)
  closewait explain                    the worst process on the host
  closewait explain 4121 --trace 30s   also trace 30s: which code made its CLOSE_WAIT sockets

Exit status: the process's status (0 ok, 1 warning, 2 critical); 0 when it holds no
CLOSE_WAIT sockets; 3 when the process does not exist or closewait could not run.`
}

// Run explains one process.
func (c *ExplainCmd) Run(g *Globals) error {
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	fs := g.procFS()
	if c.Trace < 0 || (c.Trace > 0 && c.PID == "") {
		return errors.New("--trace needs a positive duration and a pid: closewait explain PID --trace 30s")
	}
	if c.PID == "" {
		return c.worst(g, th, fs)
	}
	pid, err := strconv.Atoi(c.PID)
	if err != nil || pid <= 0 {
		return fmt.Errorf("explain: %q is not a process id (a number above 0; leave it out to explain the worst process)", c.PID)
	}
	if err := g.checkPIDs([]int{pid}); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if c.Trace > 0 {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		c.origins, _, err = g.traceOrigins(ctx, []int{pid}, c.Trace, 5, func([]int) {
			fmt.Fprintf(g.stderr, "closewait: tracing socket creation in process %d for %v (Ctrl-C ends early)\n", pid, c.Trace)
		})
		if err != nil {
			return err
		}
	}
	proc, err := fs.Process(pid)
	if err != nil {
		if errors.Is(err, procscan.ErrVanished) {
			return fmt.Errorf("explain: no process %d (it does not exist or has exited)", pid)
		}
		return fmt.Errorf("explain: %w", err)
	}
	opt := snapshot.Options{CompleteScan: c.FullScan, ForceProcNet: c.ProcNet}
	// Only the process's own network namespace can hold its sockets.
	var st unix.Stat_t
	if unix.Stat(fs.Path(strconv.Itoa(pid), "ns", "net"), &st) == nil {
		opt.NetNS = map[uint64]bool{st.Ino: true}
	}
	prev, snap, err := g.sample(opt, c.Sample)
	if err != nil {
		return err
	}
	r := diagnose.Analyze(snap, th, diagnose.Options{PIDs: map[int]bool{pid: true}, FS: &fs, AllThreads: true, Previous: prev})
	var p *diagnose.ProcessReport
	for _, pr := range r.Processes {
		if pr.PID == pid {
			p = pr
		}
	}
	if p == nil && snap.Partial && proc.UID != uint32(os.Geteuid()) {
		return fmt.Errorf("explain: cannot see which sockets process %d (user %s) holds: its fds are not readable without privilege (run as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)", pid, proc.User)
	}
	if p == nil {
		if c.JSON {
			rt, why := diagnose.DetectRuntimeFS(proc, &fs)
			return writeJSON(g, report.BuildJSONProcess(&diagnose.ProcessReport{PID: pid, Process: proc, Runtime: rt, RuntimeEvidence: why}))
		}
		fmt.Fprintf(g.stdout, "Process %d (%s) holds no CLOSE_WAIT sockets.\n", pid, proc.Comm)
		return nil
	}
	return c.write(g, p, snap)
}

// write prints one process's explanation and ends with its status.
func (c *ExplainCmd) write(g *Globals, p *diagnose.ProcessReport, snap *snapshot.Snapshot) error {
	var peeks map[int]report.Peek
	if c.Peek {
		peeks = peekFindings(p)
	}
	var err error
	switch {
	case c.JSON:
		jp := report.BuildJSONProcess(p)
		report.AddPeeks(&jp, peeks)
		if c.origins != nil {
			err = writeJSON(g, explainTraced{jp, c.origins.Origins})
		} else {
			err = writeJSON(g, jp)
		}
	default:
		err = report.WriteExplain(g.stdout, p, report.ExplainOptions{Color: useColor(g.stdout, c.Color), Now: snap.Time, Peeks: peeks})
		if err == nil && c.origins != nil {
			fmt.Fprintf(g.stdout, "\nOrigins (the code that made these sockets, traced %v):\n", c.origins.elapsed.Round(100*time.Millisecond))
			err = origins.WriteText(g.stdout, c.origins.Report, origins.TextOptions{Indent: "  "})
		}
	}
	if err != nil {
		return err
	}
	return exitCode(p.Status.ExitCode())
}

// explainTraced is explain --json --trace: the process's object with the
// origins of closewait trace --json.
type explainTraced struct {
	report.JSONProcess
	Origins []origins.Origin `json:"origins"`
}

// worst explains the worst process of the host (closewait explain without a pid).
func (c *ExplainCmd) worst(g *Globals, th diagnose.Thresholds, fs procscan.FS) error {
	prev, snap, err := g.sample(snapshot.Options{CompleteScan: c.FullScan, ForceProcNet: c.ProcNet}, c.Sample)
	if err != nil {
		return err
	}
	r := diagnose.Analyze(snap, th, diagnose.Options{Previous: prev})
	if len(r.Processes) == 0 {
		if c.JSON {
			fmt.Fprintln(g.stdout, "null")
		} else {
			fmt.Fprintln(g.stdout, "No process holds a CLOSE_WAIT socket.")
		}
		return nil
	}
	// Judge the worst one again with what only it needs: runtime hints and threads.
	pid, holders := r.Processes[0].PID, len(r.Processes)
	r = diagnose.Analyze(snap, th, diagnose.Options{PIDs: map[int]bool{pid: true}, FS: &fs, AllThreads: true, Previous: prev})
	if len(r.Processes) == 0 {
		return fmt.Errorf("explain: process %d exited", pid)
	}
	if !c.JSON {
		fmt.Fprintf(g.stdout, "The worst of %d processes holding CLOSE_WAIT sockets (closewait explain PID for another):\n\n", holders)
	}
	return c.write(g, r.Processes[0], snap)
}

func writeJSON(g *Globals, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sample takes one snapshot, or with d > 0 two snapshots d apart, the second
// reusing the first's owners; base is nil for one snapshot.
func (g *Globals) sample(opt snapshot.Options, d time.Duration) (base *diagnose.Baseline, cur *snapshot.Snapshot, err error) {
	if d < 0 {
		return nil, nil, errors.New("--sample must not be negative")
	}
	var succ snapshot.Successive
	if d > 0 {
		prev, err := g.take(opt)
		if err != nil {
			return nil, nil, err
		}
		time.Sleep(d)
		succ.Previous = prev
		base = diagnose.NewBaseline(prev)
	}
	cur, err = g.takeAfter(opt, succ)
	return base, cur, err
}
