package agent

import (
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/procscan"
)

// Point is one moment of a series: a process's (or, for totals, the host's)
// CLOSE_WAIT count and fd usage, as the dashboard and the JSON API show it.
type Point struct {
	Time      time.Time
	CloseWait int
	OpenFDs   int
	FDLimit   uint64  // soft RLIMIT_NOFILE; 0 when unknown or unlimited
	OldestAge float64 // seconds; 0 when unknown
}

// History is what the agent needs from a history: record each report, read
// a process's series and the host's totals back. Implementations must be
// safe for concurrent use (one writer, many readers).
type History interface {
	Record(r *diagnose.Report) error
	Series(pid int, since time.Time) ([]Point, error)
	Totals(since time.Time) ([]Point, error)
}

// NewRing makes the in-memory History keeping retention of points taken
// every interval (a history.Ring).
func NewRing(retention, interval time.Duration) History {
	return FromStore(history.NewRing(retention, interval))
}

// readerHistory adapts a history.Reader (a Store file or a Ring) to History.
type readerHistory struct{ r history.Reader }

// FromStore makes a History of a history store (an open history.Store, or a
// history.Ring). The caller closes a Store after the agent has stopped.
func FromStore(r history.Reader) History { return readerHistory{r} }

func (h readerHistory) Record(r *diagnose.Report) error { return h.r.Record(r) }

func (h readerHistory) Series(pid int, since time.Time) ([]Point, error) {
	pts, err := h.r.Series(pid, since)
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point{Time: p.Time, CloseWait: p.CloseWait, OpenFDs: p.OpenFDs, FDLimit: p.FDLimit}
		if p.FDLimit == procscan.Unlimited {
			out[i].FDLimit = 0
		}
		if p.HasAge {
			out[i].OldestAge = p.OldestAge.Seconds()
		}
	}
	return out, nil
}

func (h readerHistory) Totals(since time.Time) ([]Point, error) {
	tps, err := h.r.Totals(since)
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(tps))
	for i, p := range tps {
		out[i] = Point{Time: p.Time, CloseWait: p.CloseWait, OpenFDs: p.OpenFDs}
		if p.HasAge {
			out[i].OldestAge = p.OldestAge.Seconds()
		}
	}
	return out, nil
}
