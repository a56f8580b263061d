package agent

import (
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/procscan"
)

const procUnlimited = procscan.Unlimited

// storeHistory adapts a history.Store (bbolt file) to History.
type storeHistory struct{ s *history.Store }

// FromStore makes a History of an open history store. The caller closes the
// store after the agent has stopped.
func FromStore(s *history.Store) History { return storeHistory{s} }

func (h storeHistory) Record(r *diagnose.Report) error { return h.s.Record(r) }

func (h storeHistory) Series(pid int, since time.Time) ([]Point, error) {
	pts, err := h.s.Series(pid, since)
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point{Time: p.Time, CloseWait: p.CloseWait, OpenFDs: p.OpenFDs, FDLimit: p.FDLimit}
		if p.FDLimit == procUnlimited {
			out[i].FDLimit = 0
		}
		if p.HasAge {
			out[i].OldestAge = p.OldestAge.Seconds()
		}
	}
	return out, nil
}

func (h storeHistory) Totals(since time.Time) ([]Point, error) {
	tps, err := h.s.Totals(since)
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(tps))
	for i, p := range tps {
		out[i] = Point{Time: p.Time, CloseWait: p.CloseWait}
	}
	return out, nil
}
