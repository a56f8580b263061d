package agent

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
)

// Point is one moment of a series: a process's (or, for totals, the host's)
// CLOSE_WAIT count and fd usage.
type Point struct {
	Time      time.Time
	CloseWait int
	OpenFDs   int
	FDLimit   uint64  // soft RLIMIT_NOFILE; 0 when unknown or unlimited
	OldestAge float64 // seconds; 0 when unknown
}

// History is what the agent needs from a history store: record each report,
// read a process's series and the host's totals back. Implementations must be
// safe for concurrent use (one writer, many readers).
type History interface {
	Record(r *diagnose.Report) error
	Series(pid int, since time.Time) ([]Point, error)
	Totals(since time.Time) ([]Point, error)
}

// MaxRingProcesses bounds the processes a Ring tracks per record: the ones
// with the most CLOSE_WAIT sockets.
const MaxRingProcesses = 500

// Ring is a bounded in-memory History: at most retention/interval+1 points
// per series, at most MaxRingProcesses processes recorded per report, and
// series of processes not seen for the retention dropped.
type Ring struct {
	mu        sync.RWMutex
	retention time.Duration
	max       int
	procs     map[int][]Point
	totals    []Point
}

// NewRing makes a Ring keeping retention of points taken every interval.
func NewRing(retention, interval time.Duration) *Ring {
	n := 2
	if interval > 0 {
		n = int(retention/interval) + 1
	}
	return &Ring{retention: retention, max: max(n, 2), procs: map[int][]Point{}}
}

func appendBounded(s []Point, p Point, n int) []Point {
	if len(s) >= n {
		// Shift in place: the backing array never grows past n.
		copy(s, s[len(s)-n+1:])
		s = s[:n-1]
	}
	return append(s, p)
}

// Record adds one point per process (the MaxRingProcesses with the most
// CLOSE_WAIT sockets) and one to the totals.
func (h *Ring) Record(r *diagnose.Report) error {
	if r == nil || r.Snapshot == nil {
		return nil
	}
	t := r.Snapshot.Time
	procs := r.Processes
	if len(procs) > MaxRingProcesses {
		procs = slices.Clone(procs)
		slices.SortFunc(procs, func(a, b *diagnose.ProcessReport) int { return cmp.Compare(b.CloseWait, a.CloseWait) })
		procs = procs[:MaxRingProcesses]
	}
	tot := Point{Time: t, CloseWait: r.CloseWait}
	if r.Unattributed.HasAge {
		tot.OldestAge = r.Unattributed.Oldest.Seconds()
	}
	for _, p := range r.Processes { // all of them: the host's oldest may be beyond MaxRingProcesses
		if p.HasAge {
			tot.OldestAge = max(tot.OldestAge, p.Oldest.Seconds())
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range procs {
		pt := Point{Time: t, CloseWait: p.CloseWait}
		if p.Process != nil {
			pt.OpenFDs = p.Process.OpenFDs
			if p.Process.FDUsage() > 0 {
				pt.FDLimit = p.Process.FDSoft
			}
		}
		if p.HasAge {
			pt.OldestAge = p.Oldest.Seconds()
		}
		tot.OpenFDs += pt.OpenFDs
		h.procs[p.PID] = appendBounded(h.procs[p.PID], pt, h.max)
	}
	h.totals = appendBounded(h.totals, tot, h.max)
	cut := t.Add(-h.retention)
	for pid, s := range h.procs {
		if len(s) == 0 || s[len(s)-1].Time.Before(cut) {
			delete(h.procs, pid)
		}
	}
	return nil
}

func since(s []Point, t time.Time) []Point {
	i, _ := slices.BinarySearchFunc(s, t, func(p Point, t time.Time) int { return p.Time.Compare(t) })
	return slices.Clone(s[i:])
}

// Series returns the process's points at or after since, oldest first; nil
// when the process is not in the history.
func (h *Ring) Series(pid int, t time.Time) ([]Point, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.procs[pid]
	if !ok {
		return nil, nil
	}
	return since(s, t), nil
}

// Totals returns the host's points at or after since, oldest first.
func (h *Ring) Totals(t time.Time) ([]Point, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return since(h.totals, t), nil
}
