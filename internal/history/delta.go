package history

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Delta compares a report with the newest record of a store: what changed
// since the last run.
type Delta struct {
	Path string
	// HasPrevious is false when the store held no record yet.
	HasPrevious bool
	Previous    time.Time
	Since       time.Duration // from the previous record to this report
	// CloseWaitBefore is the host's CLOSE_WAIT count in the previous record.
	CloseWaitBefore int
	CloseWaitNow    int
	PerMin          float64 // host change per minute
	Processes       []ProcessDelta
	Records         int // records in the store before this one
}

// ProcessDelta compares one process of the report with the previous record.
type ProcessDelta struct {
	PID int
	// InPrevious is false when the process held no CLOSE_WAIT socket at the
	// previous record (or did not exist).
	InPrevious bool
	Before     int // its CLOSE_WAIT count then
	Now        int
	PerMin     float64
	// FirstSeen is the earliest first-seen time of its current CLOSE_WAIT
	// sockets in the store (an age that does not depend on tcp_info).
	FirstSeen    time.Time
	HasFirstSeen bool
}

// Compare computes the delta of r against the newest record. Call it before
// recording r.
func (s *Store) Compare(r *diagnose.Report) (*Delta, error) {
	d := &Delta{Path: s.path, CloseWaitNow: r.CloseWait}
	now := r.Snapshot.Time
	tp, pts, ok, err := s.LastRecord()
	if err != nil {
		return nil, err
	}
	before := map[int]Point{}
	if ok {
		d.HasPrevious, d.Previous, d.CloseWaitBefore = true, tp.Time, tp.CloseWait
		d.Since = now.Sub(tp.Time)
		d.PerMin, _ = PerMinute(tp.CloseWait, r.CloseWait, tp.Time, now)
		for _, p := range pts {
			before[p.PID] = p
		}
	}
	first, err := s.firstSeenOf(r)
	if err != nil {
		return nil, err
	}
	for _, p := range r.Processes {
		pd := ProcessDelta{PID: p.PID, Now: p.CloseWait}
		if b, ok := before[p.PID]; ok && (p.Process == nil || b.StartTime.IsZero() || b.StartTime.Equal(p.Process.StartTime)) {
			pd.InPrevious, pd.Before = true, b.CloseWait
		}
		if d.HasPrevious {
			pd.PerMin, _ = PerMinute(pd.Before, pd.Now, d.Previous, now)
		}
		for _, so := range p.Sockets {
			if t, ok := first[so.Inode]; ok && (!pd.HasFirstSeen || t.Before(pd.FirstSeen)) {
				pd.FirstSeen, pd.HasFirstSeen = t, true
			}
		}
		d.Processes = append(d.Processes, pd)
	}
	if in, err := s.Info(); err == nil {
		d.Records = in.Records
	}
	return d, nil
}

// firstSeenOf looks up the first-seen times of a report's CLOSE_WAIT
// sockets in one transaction; entries whose addresses differ (a reused
// inode) are skipped.
func (s *Store) firstSeenOf(r *diagnose.Report) (map[uint64]time.Time, error) {
	out := map[uint64]time.Time{}
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSockets)
		for i := range r.Snapshot.Sockets {
			so := &r.Snapshot.Sockets[i].Socket
			if so.State != sockdiag.CloseWait || so.Inode == 0 {
				continue
			}
			v := b.Get(u64Key(so.Inode))
			if len(v) == 16 && binary.BigEndian.Uint64(v[8:]) == tupleHash(so) {
				out[so.Inode] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
		}
		return nil
	})
	return out, err
}

// JSONDelta is the "history" object `closewait --history --json` adds to
// the report.
type JSONDelta struct {
	Path            string             `json:"path"`
	Records         int                `json:"records"`
	PreviousTime    string             `json:"previous_time,omitempty"`
	SinceSeconds    *float64           `json:"since_seconds,omitempty"`
	CloseWaitBefore *int               `json:"close_wait_before,omitempty"`
	GrowthPerMin    *float64           `json:"growth_per_min,omitempty"`
	Processes       []JSONProcessDelta `json:"processes"`
}

// JSONProcessDelta is one process of a JSONDelta.
type JSONProcessDelta struct {
	PID int `json:"pid"`
	// CloseWaitBefore is null when the process held no CLOSE_WAIT socket at
	// the previous record.
	CloseWaitBefore     *int     `json:"close_wait_before"`
	GrowthPerMin        *float64 `json:"growth_per_min,omitempty"`
	FirstSeenAgeSeconds *float64 `json:"first_seen_age_seconds,omitempty"`
}

func round2(v float64) *float64 {
	v = math.Round(v*100) / 100
	return &v
}

// JSON converts the delta; now is the report's time.
func (d *Delta) JSON(now time.Time) *JSONDelta {
	j := &JSONDelta{Path: d.Path, Records: d.Records, Processes: []JSONProcessDelta{}}
	if d.HasPrevious {
		j.PreviousTime = d.Previous.UTC().Format(time.RFC3339)
		j.SinceSeconds = round2(d.Since.Seconds())
		before := d.CloseWaitBefore
		j.CloseWaitBefore = &before
		if d.Since > 0 {
			j.GrowthPerMin = round2(d.PerMin)
		}
	}
	for _, p := range d.Processes {
		jp := JSONProcessDelta{PID: p.PID}
		if p.InPrevious {
			before := p.Before
			jp.CloseWaitBefore = &before
		}
		if d.HasPrevious && d.Since > 0 {
			jp.GrowthPerMin = round2(p.PerMin)
		}
		if p.HasFirstSeen {
			jp.FirstSeenAgeSeconds = round2(now.Sub(p.FirstSeen).Seconds())
		}
		j.Processes = append(j.Processes, jp)
	}
	return j
}

// WriteText writes the delta as a few lines for the text report.
func (d *Delta) WriteText(w io.Writer, r *diagnose.Report) error {
	bw := bufio.NewWriter(w)
	now := r.Snapshot.Time
	if !d.HasPrevious {
		fmt.Fprintf(bw, "\nHistory: first run recorded in %s; the next run shows growth since this one.\n", d.Path)
		return bw.Flush()
	}
	fmt.Fprintf(bw, "\nSince the last run (%s ago, %s): CLOSE_WAIT %d → %d (%s, %s/min). History: %s, %d records.\n",
		diagnose.FormatAge(d.Since), d.Previous.UTC().Format("2006-01-02 15:04:05 UTC"), d.CloseWaitBefore, d.CloseWaitNow,
		signedInt(d.CloseWaitNow-d.CloseWaitBefore), signedRate(d.PerMin), d.Path, d.Records+1)
	comms := map[int]string{}
	for _, p := range r.Processes {
		if p.Process != nil {
			comms[p.PID] = p.Process.Comm
		}
	}
	for _, p := range d.Processes {
		line := fmt.Sprintf("  %s %d: ", comms[p.PID], p.PID)
		if p.InPrevious {
			line += fmt.Sprintf("%d → %d (%s, %s/min)", p.Before, p.Now, signedInt(p.Now-p.Before), signedRate(p.PerMin))
		} else {
			line += fmt.Sprintf("new since the last run (%d)", p.Now)
		}
		if p.HasFirstSeen && now.Sub(p.FirstSeen) > 0 {
			line += fmt.Sprintf("; oldest socket first seen %s ago", diagnose.FormatAge(now.Sub(p.FirstSeen)))
		}
		fmt.Fprintln(bw, line)
	}
	return bw.Flush()
}

func signedInt(n int) string {
	if n > 0 {
		return fmt.Sprintf("+%d", n)
	}
	return fmt.Sprint(n)
}

func signedRate(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	if math.Abs(v) >= 10 {
		s = fmt.Sprintf("%.0f", v)
	}
	if v > 0 {
		return "+" + s
	}
	return s
}
