package history

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
)

// Reader reads a history back: a Store or a Ring.
type Reader interface {
	Recorder
	// Series returns the points of process pid at or after since, oldest
	// first (the latest process with that pid only).
	Series(pid int, since time.Time) ([]Point, error)
	// Totals returns the host records at or after since, oldest first.
	Totals(since time.Time) ([]TotalPoint, error)
}

// MaxRingProcesses bounds the processes a Ring records per report: the ones
// with the most CLOSE_WAIT sockets.
const MaxRingProcesses = 500

// Ring is the in-memory history: the same records as a Store, kept for a
// retention, with nothing written anywhere. It keeps at most
// retention/interval+1 points per series and MaxRingProcesses processes per
// report, and forgets a process not seen for the retention. Its memory
// does not depend on the socket count: about 150 bytes a point. It is safe
// for concurrent use (one writer, many readers).
type Ring struct {
	mu        sync.RWMutex
	retention time.Duration
	max       int
	procs     map[int][]Point
	totals    []TotalPoint
}

// NewRing makes a Ring keeping retention of records taken every interval.
func NewRing(retention, interval time.Duration) *Ring {
	n := 2
	if interval > 0 {
		n = int(retention/interval) + 1
	}
	return &Ring{retention: retention, max: max(n, 2), procs: map[int][]Point{}}
}

func appendBounded[P any](s []P, p P, n int) []P {
	if len(s) >= n {
		// Shift in place: the backing array never grows past n.
		copy(s, s[len(s)-n+1:])
		s = s[:n-1]
	}
	return append(s, p)
}

// Record adds one point per process (the MaxRingProcesses with the most
// CLOSE_WAIT sockets) and one host record.
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
	tot := totalOf(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range procs {
		h.procs[p.PID] = appendBounded(h.procs[p.PID], pointOf(t, p), h.max)
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

func since[P any](s []P, t time.Time, at func(P) time.Time) []P {
	i, _ := slices.BinarySearchFunc(s, t, func(p P, t time.Time) int { return at(p).Compare(t) })
	return slices.Clone(s[i:])
}

// Series returns the process's points at or after since, oldest first; nil
// when the process is not in the history. Like Store.Series, only the
// latest process with that pid is returned.
func (h *Ring) Series(pid int, t time.Time) ([]Point, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.procs[pid]
	if !ok {
		return nil, nil
	}
	out := since(s, t, func(p Point) time.Time { return p.Time })
	if len(out) > 0 {
		latest := out[len(out)-1].StartTime
		out = slices.DeleteFunc(out, func(p Point) bool { return !p.StartTime.Equal(latest) })
	}
	return out, nil
}

// Totals returns the host records at or after since, oldest first.
func (h *Ring) Totals(t time.Time) ([]TotalPoint, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return since(h.totals, t, func(p TotalPoint) time.Time { return p.Time }), nil
}
