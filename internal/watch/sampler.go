// Package watch follows CLOSE_WAIT over time: it takes a snapshot every
// interval (reusing the previous snapshot's owners, so that a tick costs a
// netlink dump and one readlink per known socket instead of a /proc scan),
// judges it with growth over a sliding window, keeps short per-process
// trends, and shows the result as NDJSON, plain lines or a full-screen
// terminal view.
package watch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// DefaultWindow is the span growth is measured over.
const DefaultWindow = time.Minute

// TrendLen is the number of points kept per process for its trend line.
const TrendLen = 64

// Options control a Sampler.
type Options struct {
	// Take takes a snapshot; prev is the previous one (for owner reuse) or
	// nil. Unless verify is set, Take may trust prev's owners while their
	// processes live (snapshot.Options.ReuseByProcess and SkipUnowned).
	Take func(prev *snapshot.Snapshot, verify bool) (*snapshot.Snapshot, error)
	// VerifyEvery makes every n-th tick verify each reused owner (one
	// readlink per socket) and search again for unattributed sockets; zero
	// means every tick.
	VerifyEvery int
	// Thresholds judge each snapshot.
	Thresholds diagnose.Thresholds
	// PIDs, when set, keeps only these processes.
	PIDs map[int]bool
	// Select, when set, returns the processes to keep in each snapshot
	// (processes come and go: a filter by program name is applied anew each
	// tick); it replaces PIDs.
	Select func(*snapshot.Snapshot) map[int]bool
	// Window is the span growth is measured over; zero means DefaultWindow.
	// Until a window has passed, growth covers the time since the first tick.
	Window time.Duration
	// History, when set, records every tick.
	History *history.Store
}

// Tick is one interval's result.
type Tick struct {
	N      int // 1 for the first tick
	Report *diagnose.Report
	// Took is how long the snapshot and its judgement took.
	Took time.Duration
	// Trends holds the recent CLOSE_WAIT counts of each process in the report,
	// oldest first, ending with this tick's.
	Trends map[int][]int
	// Total is the recent host CLOSE_WAIT counts, oldest first.
	Total []int
	// GrowthPerMin is the host's CLOSE_WAIT change per minute over Span
	// (valid when Span > 0: from the second tick on).
	GrowthPerMin float64
	// Span is the time growth was measured over: up to the window.
	Span time.Duration
	// HistoryErr is the error of recording this tick, if any.
	HistoryErr error
}

type procKey struct {
	pid   int
	start time.Time
}

// Sampler takes the ticks. It is not safe for concurrent use.
type Sampler struct {
	opt Options
	n   int
	// prev is the last snapshot (owner reuse); baselines are earlier ones,
	// indexed once, kept about window/2 apart, the oldest being the growth
	// baseline.
	prev      *snapshot.Snapshot
	analyzer  *diagnose.Analyzer // remembers each process's sockets between ticks
	baselines []*diagnose.Baseline
	trends    map[procKey][]int
	total     []int
}

// NewSampler returns a sampler.
func NewSampler(opt Options) *Sampler {
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	return &Sampler{opt: opt, trends: map[procKey][]int{}, analyzer: diagnose.NewAnalyzer()}
}

// Next takes a snapshot and judges it.
func (s *Sampler) Next() (*Tick, error) {
	start := time.Now()
	verify := s.opt.VerifyEvery <= 1 || s.n%s.opt.VerifyEvery == 0
	snap, err := s.opt.Take(s.prev, verify)
	if err != nil {
		return nil, err
	}
	var base *diagnose.Baseline
	if len(s.baselines) > 0 {
		base = s.baselines[0]
	}
	pids := s.opt.PIDs
	if s.opt.Select != nil {
		pids = s.opt.Select(snap)
	}
	r := s.analyzer.Analyze(snap, s.opt.Thresholds, diagnose.Options{PIDs: pids, Previous: base})
	s.n++
	t := &Tick{N: s.n, Report: r, Took: time.Since(start), Trends: map[int][]int{}}
	if base != nil {
		t.Span = snap.Time.Sub(base.Time)
		if t.Span > 0 {
			t.GrowthPerMin = float64(snap.States[sockdiag.CloseWait]-base.CloseWait) / t.Span.Minutes()
		}
	}

	// Trends: append this tick's count, forget processes no longer reported.
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
	if n := len(s.baselines); n == 0 || snap.Time.Sub(s.baselines[n-1].Time) >= s.opt.Window/2 {
		s.baselines = append(s.baselines, diagnose.NewBaseline(snap))
	}
	for len(s.baselines) > 1 && snap.Time.Sub(s.baselines[1].Time) >= s.opt.Window {
		s.baselines[0] = nil
		s.baselines = s.baselines[1:]
	}

	if s.opt.History != nil {
		t.HistoryErr = s.opt.History.Record(r)
	}
	return t, nil
}

// Run calls Next every interval until ctx is done or count ticks were
// taken (count 0: no limit), handing each tick to fn. The first error of
// the first tick is returned; later snapshot errors are handed to onErr and
// the ticks go on. An error from fn ends the run.
func (s *Sampler) Run(ctx context.Context, interval time.Duration, count int, fn func(*Tick) error, onErr func(error)) error {
	if interval <= 0 {
		return errors.New("watch: interval must be positive")
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
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}
