// Package agent is closewait's long-running server: it takes an incremental
// snapshot every interval, judges it, keeps a bounded history, and serves
// Prometheus metrics, a JSON API and an embedded web dashboard over HTTP.
//
// # What it reads and what it never does
//
// The agent only reads: the kernel's socket table (netlink sock_diag, no
// capability needed) and /proc (CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to
// see other users' fd tables and thus the owners of their sockets). It never
// destroys sockets or changes any other state, and its HTTP surface answers
// GET and HEAD only.
//
// # Concurrency
//
// One goroutine (Run) scans; each scan publishes an immutable state (the
// report, its duration and error) through an atomic pointer. HTTP handlers
// and the Prometheus collector only read the latest published state, so a
// scrape never waits for a scan and never sees a half-built report.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/origins"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
)

// Defaults of Options.
const (
	DefaultInterval  = 15 * time.Second
	DefaultTopN      = 20
	DefaultRetention = time.Hour
	// DefaultFullCheckEvery: at a 15 s interval, a full owner check every 2 minutes.
	DefaultFullCheckEvery = 8
	// DefaultFullCheckEveryWithChanges is the default with a change feed
	// (Options.Changes), which keeps the CLOSE_WAIT set exact between full
	// checks: these then only refresh queues, timers, tcp_info and owners
	// passed between processes. At 15 s, every 10 minutes.
	DefaultFullCheckEveryWithChanges = 40
)

// Options configure an Agent. The zero value scans /proc every 15 s with the
// default thresholds, exports the top 20 processes and keeps one hour of
// history in memory.
type Options struct {
	// ProcRoot is the procfs mount point; empty means /proc.
	ProcRoot string
	// ShowSecrets serves command lines as they are; by default
	// secret-looking arguments are redacted (package redact).
	ShowSecrets bool
	// Interval is the time between scans; zero means DefaultInterval.
	Interval time.Duration
	// Thresholds judge each process; the zero value disables every rule, so
	// callers normally pass diagnose.DefaultThresholds or the user's flags.
	Thresholds diagnose.Thresholds
	// TopN bounds the per-process metric series: the TopN processes with the
	// most CLOSE_WAIT sockets get their own series, the rest are summed under
	// comm="other". Zero means DefaultTopN.
	TopN int
	// History stores the per-process series; nil means an in-memory ring
	// keeping Retention (nothing is written to disk).
	History History
	// HistoryProblem, when set, says why the history file the user asked
	// for is not used (it is damaged): the agent keeps its history in
	// memory and says so in every scan's notices, on /healthz and in the
	// closewait_history_file_ok metric.
	HistoryProblem string
	// Retention is how long the in-memory history keeps points; zero means
	// DefaultRetention. Ignored when History is set.
	Retention time.Duration
	// CompleteScan reads every process's fd table on a full scan.
	CompleteScan bool
	// ForceProcNet reads /proc/net/tcp instead of netlink (no ages).
	ForceProcNet bool
	// NetNS, when not nil, reads only the network namespaces with these
	// inodes (one agent per namespace); nil reads every namespace.
	NetNS map[uint64]bool
	// OwnerSource, when set, finds owners in one pass (the eBPF iterator)
	// instead of the /proc walk.
	OwnerSource procscan.SocketFDSource
	// Changes, when set, is the kernel's feed of sockets entering and
	// leaving CLOSE_WAIT: between full checks, a scan then dumps only the
	// other states (snapshot.Options.Changes).
	Changes snapshot.Changes
	// FullCheckEvery is how often (in scans) previous owners are re-verified
	// socket by socket and unattributed sockets searched again; the scans in
	// between trust an owner while its process lives. Zero means
	// DefaultFullCheckEvery, or DefaultFullCheckEveryWithChanges with
	// Changes; 1 verifies on every scan.
	FullCheckEvery int
	// ReleaseMemory returns the previous scan's memory to the operating
	// system after each scan (history.Sampler.ReleaseMemory): what a
	// long-running agent wants, at the cost of one garbage collection a scan.
	ReleaseMemory bool
	// Logger receives scan errors; nil discards them.
	Logger *slog.Logger
	// Version is shown on the dashboard.
	Version string
	// Origins, when set (agent --trace), is updated after every scan and
	// served at /api/v1/origins: the creation stacks of the sockets in
	// CLOSE_WAIT.
	Origins *origins.Table
}

// Agent scans periodically and serves the results. Create it with New.
type Agent struct {
	opt     Options
	hist    History
	log     *slog.Logger
	started time.Time

	state   atomic.Pointer[State]
	errors  atomic.Uint64 // failed scans
	scans   atomic.Uint64 // all scans
	scanMu  sync.Mutex    // serialises Scan
	sampler *history.Sampler
	counts  closeWaitCounts // CLOSE_WAIT sockets entered and left, for the counters
}

// State is what one scan published. It is never modified after publication.
type State struct {
	// Report is the latest successful judgement; nil before the first one.
	Report *diagnose.Report
	// Time is when the latest scan (successful or not) ended.
	Time time.Time
	// Duration is how long the latest scan took (snapshot and diagnosis).
	Duration time.Duration
	// Err is the latest scan's error; nil when it succeeded.
	Err error
}

// New checks the options and makes an agent. It does not scan yet.
func New(opt Options) (*Agent, error) {
	if opt.Interval == 0 {
		opt.Interval = DefaultInterval
	}
	if opt.Interval < 0 {
		return nil, fmt.Errorf("agent: interval must be positive, got %v", opt.Interval)
	}
	if opt.TopN == 0 {
		opt.TopN = DefaultTopN
	}
	if opt.TopN < 0 {
		return nil, fmt.Errorf("agent: top must be positive, got %d", opt.TopN)
	}
	if opt.Retention == 0 {
		opt.Retention = DefaultRetention
	}
	if opt.FullCheckEvery <= 0 {
		opt.FullCheckEvery = DefaultFullCheckEvery
		if opt.Changes != nil {
			opt.FullCheckEvery = DefaultFullCheckEveryWithChanges
		}
	}
	if opt.Retention < 0 {
		return nil, fmt.Errorf("agent: retention must be positive, got %v", opt.Retention)
	}
	a := &Agent{opt: opt, hist: opt.History, log: opt.Logger, started: time.Now()}
	if a.hist == nil {
		a.hist = NewRing(opt.Retention, opt.Interval)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.sampler = history.NewSampler(history.SamplerOptions{
		Snapshot: snapshot.Options{
			ProcRoot: opt.ProcRoot, ShowSecrets: opt.ShowSecrets, CompleteScan: opt.CompleteScan, ForceProcNet: opt.ForceProcNet, OwnerSource: opt.OwnerSource,
			NetNS: opt.NetNS,
		},
		Changes:        opt.Changes,
		FullCheckEvery: opt.FullCheckEvery,
		Thresholds:     opt.Thresholds,
		Window:         -1, // no per-process growth baselines: the agent's history gives trends
		Record:         a.hist,
	})
	return a, nil
}

// Options returns the agent's options with defaults filled in.
func (a *Agent) Options() Options { return a.opt }

// Latest returns the latest published state, or nil before the first scan.
func (a *Agent) Latest() *State { return a.state.Load() }

// Scan takes one sample (history.Sampler: a snapshot reusing the previous
// one's owners, judged, recorded in the history) and publishes it. A failed
// scan keeps the previous report, counts an error and returns it.
func (a *Agent) Scan() error {
	a.scanMu.Lock()
	defer a.scanMu.Unlock()
	start := time.Now()
	a.scans.Add(1)
	t, err := a.sampler.Next()
	st := &State{Time: time.Now()}
	if old := a.state.Load(); old != nil {
		st.Report = old.Report
	}
	if err != nil {
		err = fmt.Errorf("snapshot: %w", err)
		a.errors.Add(1)
		st.Err, st.Duration = err, time.Since(start)
		a.state.Store(st)
		a.log.Error("scan failed", "err", err)
		return err
	}
	a.counts.observe(t.Report.Snapshot, t.Report.Processes)
	if a.opt.HistoryProblem != "" { // not published yet: the notice may still be added
		t.Report.Snapshot.Notices = append(t.Report.Snapshot.Notices, a.historyNotice())
	}
	if herr := t.RecordErr; herr != nil {
		// The scan itself worked: count the error, keep serving the report.
		a.errors.Add(1)
		st.Err = fmt.Errorf("history: %w", herr)
		a.log.Error("history record failed", "err", herr)
	}
	if a.opt.Origins != nil {
		if oerr := a.opt.Origins.Update(t.Report.Snapshot); oerr != nil {
			a.log.Error("origins update failed", "err", oerr)
		}
	}
	st.Report, st.Time, st.Duration = t.Report, time.Now(), time.Since(start)
	a.state.Store(st)
	if a.opt.ReleaseMemory {
		a.sampler.ReleaseMemory() // the previous report is no longer published
	}
	return st.Err
}

// Run scans now and then every interval until ctx is done. Scan errors are
// logged and counted, never fatal.
func (a *Agent) Run(ctx context.Context) error {
	_ = a.Scan()
	t := time.NewTicker(a.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-t.C:
			_ = a.Scan()
		}
	}
}

// Healthy reports whether the latest scan succeeded and is recent (within
// three intervals), with a short reason when it is not.
func (a *Agent) Healthy(now time.Time) (bool, string) {
	st := a.state.Load()
	switch {
	case st == nil:
		return false, "no scan finished yet"
	case st.Err != nil:
		return false, "last scan failed: " + st.Err.Error()
	case now.Sub(st.Time) > 3*a.opt.Interval+10*time.Second:
		return false, fmt.Sprintf("last scan finished %s ago (interval %s)", now.Sub(st.Time).Round(time.Second), a.opt.Interval)
	}
	if a.opt.HistoryProblem != "" {
		return true, "ok; " + a.historyNotice()
	}
	return true, "ok"
}

// historyNotice says that the history file is not used, and why.
func (a *Agent) historyNotice() string {
	return "history kept in memory only, the file is not used: " + a.opt.HistoryProblem
}
