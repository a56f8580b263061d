package history

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// DefaultWindow is the span growth is measured over.
const DefaultWindow = time.Minute

// TrendLen is the number of points kept per process for its trend line.
const TrendLen = 64

// Recorder records each judged snapshot: a Store (a file) or a Ring
// (memory).
type Recorder interface {
	Record(r *diagnose.Report) error
}

// SamplerOptions control a Sampler: what every snapshot reads, how often a
// sample is a full check, how reports are judged and where they are recorded.
type SamplerOptions struct {
	// Snapshot are the settings of every snapshot (owner source, namespaces,
	// procfs root ...).
	Snapshot snapshot.Options
	// Take, when set, replaces snapshot.TakeAfter (callers that fill in
	// settings of their own, tests).
	Take func(snapshot.Options, snapshot.Successive) (*snapshot.Snapshot, error)
	// Changes is the kernel's change feed, when there is one: between full
	// checks the CLOSE_WAIT set then follows it (snapshot.Successive.Changes).
	Changes snapshot.Changes
	// FullCheckEvery makes every n-th sample, and the first, a full check:
	// the sockets are dumped with tcp_info, each reused owner is verified
	// (one readlink per socket) and unattributed sockets are searched for
	// again. The samples in between trust an owner while its process lives,
	// skip sockets nobody held, and carry tcp_info (and, with Changes, the
	// CLOSE_WAIT set) over from the previous sample. Zero or one: every
	// sample is a full check.
	FullCheckEvery int
	// Thresholds judge each snapshot.
	Thresholds diagnose.Thresholds
	// PIDs, when set, keeps only these processes.
	PIDs map[int]bool
	// Select, when set, narrows each snapshot's processes further, given
	// PIDs (processes come and go: a filter by program name is applied anew
	// each sample); it returns the processes to keep.
	Select func(snap *snapshot.Snapshot, pids map[int]bool) map[int]bool
	// Window is the span growth is measured over; zero means DefaultWindow,
	// negative turns growth off (no baselines are kept). Until a window has
	// passed, growth covers the time since the first sample.
	Window time.Duration
	// Record, when set, records every report.
	Record Recorder
	// ReleaseMemory makes Run collect garbage and return free memory to the
	// operating system after handing each tick over (ReleaseMemory).
	ReleaseMemory bool
}

// Tick is one sample's result.
type Tick struct {
	N      int // 1 for the first sample
	Report *diagnose.Report
	// Full is true when the sample was a full check (SamplerOptions.FullCheckEvery).
	Full bool
	// Took is how long the snapshot and its judgement took.
	Took time.Duration
	// Trends holds the recent CLOSE_WAIT counts of each process in the report,
	// oldest first, ending with this sample's.
	Trends map[int][]int
	// Total is the recent host CLOSE_WAIT counts, oldest first.
	Total []int
	// Growth is the host's CLOSE_WAIT growth over about the window; valid
	// when HasGrowth (from the second sample on, with growth on).
	Growth    Growth
	HasGrowth bool
	// GrowthPerMin and Span are Growth.PerMin and Growth.Span(), zero
	// without growth.
	GrowthPerMin float64
	Span         time.Duration
	// RecordErr is the error of recording this sample, if any.
	RecordErr error
}

type procKey struct {
	pid   int
	start time.Time
}

// Sampler takes successive snapshots and judges them: the one loop behind
// watch and the agent. It owns what successive snapshots share: the previous
// snapshot (owner reuse, carried tcp_info, the change feed's set), the
// full-check cadence, the diagnose.Analyzer that remembers each process's
// sockets, the growth baselines and the per-process trends. It keeps one
// snapshot between samples. It is not safe for concurrent use.
type Sampler struct {
	opt SamplerOptions
	n   int
	// prev is the last snapshot (owner reuse); baselines are earlier ones,
	// indexed once, kept about window/2 apart, the oldest being the growth
	// baseline.
	prev      *snapshot.Snapshot
	analyzer  *diagnose.Analyzer
	baselines []*diagnose.Baseline
	trends    map[procKey][]int
	total     []int
}

// NewSampler returns a sampler.
func NewSampler(opt SamplerOptions) *Sampler {
	if opt.Window == 0 {
		opt.Window = DefaultWindow
	}
	if opt.Take == nil {
		opt.Take = snapshot.TakeAfter
	}
	return &Sampler{opt: opt, trends: map[procKey][]int{}, analyzer: diagnose.NewAnalyzer()}
}

// Options returns the sampler's options with defaults filled in.
func (s *Sampler) Options() SamplerOptions { return s.opt }

// SetPIDs narrows later samples to these processes (nil: all).
func (s *Sampler) SetPIDs(pids map[int]bool) { s.opt.PIDs = pids }

// Next takes a snapshot and judges it. A failed snapshot leaves the sampler
// as it was: the next sample is taken after the same previous one.
func (s *Sampler) Next() (*Tick, error) {
	start := time.Now()
	full := s.opt.FullCheckEvery <= 1 || s.n%s.opt.FullCheckEvery == 0
	trust := !full
	snap, err := s.opt.Take(s.opt.Snapshot, snapshot.Successive{
		Previous: s.prev, ReuseByProcess: trust, SkipUnowned: trust, CarryInfo: trust, Changes: s.opt.Changes,
	})
	if err != nil {
		return nil, err
	}
	var base *diagnose.Baseline
	if len(s.baselines) > 0 {
		base = s.baselines[0]
	}
	pids := s.opt.PIDs
	if s.opt.Select != nil {
		pids = s.opt.Select(snap, pids)
	}
	r := s.analyzer.Analyze(snap, s.opt.Thresholds, diagnose.Options{PIDs: pids, Previous: base})
	s.n++
	t := &Tick{N: s.n, Report: r, Full: full, Took: time.Since(start), Trends: map[int][]int{}}
	if base != nil {
		t.Growth, t.HasGrowth = Measure(base.CloseWait, snap.States[sockdiag.CloseWait], base.Time, snap.Time)
		t.GrowthPerMin, t.Span = t.Growth.PerMin, t.Growth.Span()
	}

	// Trends: append this sample's count, forget processes no longer reported.
	seen := make(map[procKey]bool, len(r.Processes))
	for _, p := range r.Processes {
		k := procKey{pid: p.PID}
		if p.Process != nil {
			k.start = p.Process.StartTime
		}
		seen[k] = true
		tr := append(s.trends[k], p.CloseWait)
		if len(tr) > TrendLen {
			tr = tr[len(tr)-TrendLen:]
		}
		s.trends[k] = tr
		t.Trends[p.PID] = tr
	}
	for k := range s.trends {
		if !seen[k] {
			delete(s.trends, k)
		}
	}
	s.total = append(s.total, r.CloseWait)
	if len(s.total) > TrendLen {
		s.total = s.total[len(s.total)-TrendLen:]
	}
	t.Total = s.total

	// Baselines: keep one per half window, drop those older than needed for
	// a full window: growth spans one to one and a half windows, with at
	// most three baselines kept (an index of their CLOSE_WAIT sockets, not
	// the snapshots).
	s.prev = snap
	if s.opt.Window > 0 {
		if n := len(s.baselines); n == 0 || snap.Time.Sub(s.baselines[n-1].Time) >= s.opt.Window/2 {
			s.baselines = append(s.baselines, diagnose.NewBaseline(snap))
		}
		for len(s.baselines) > 1 && snap.Time.Sub(s.baselines[1].Time) >= s.opt.Window {
			s.baselines[0] = nil
			s.baselines = s.baselines[1:]
		}
	}

	if s.opt.Record != nil {
		t.RecordErr = s.opt.Record.Record(r)
	}
	return t, nil
}

// ReleaseMemory collects garbage and returns the free heap to the operating
// system (debug.FreeOSMemory). Call it once the previous tick is dropped
// (the agent: after publishing the new report): every sample allocates a
// whole new snapshot (about 250 bytes a CLOSE_WAIT socket) while the
// previous one is still needed, so the heap's peak is two snapshots, and
// the Go runtime would otherwise keep GOGC times that peak mapped: 230 MB
// for 100k sockets at GOGC 200, against 60-90 MB with this. It costs one
// garbage collection per sample, which the sample's own allocation about
// triggers anyway.
func (s *Sampler) ReleaseMemory() {
	debug.FreeOSMemory()
}

// Run calls Next every interval until ctx is done or count samples were
// taken (count 0: no limit), handing each tick to fn. The error of the
// first sample is returned; later snapshot errors are handed to onErr and
// the samples go on. An error from fn ends the run.
func (s *Sampler) Run(ctx context.Context, interval time.Duration, count int, fn func(*Tick) error, onErr func(error)) error {
	if interval <= 0 {
		return errors.New("sampler: interval must be positive")
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for i := 0; count <= 0 || i < count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-tk.C:
			}
		}
		t, err := s.Next()
		if err != nil {
			if s.n == 0 {
				return err
			}
			if onErr != nil {
				onErr(fmt.Errorf("tick %d: %w", i+1, err))
			}
			continue
		}
		if err := fn(t); err != nil {
			return err
		}
		if s.opt.ReleaseMemory {
			s.ReleaseMemory()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}
