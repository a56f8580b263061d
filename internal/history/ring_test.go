package history

import (
	"testing"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
)

func ringProc(pid, closeWait int, start time.Time) *diagnose.ProcessReport {
	return &diagnose.ProcessReport{PID: pid, CloseWait: closeWait, Process: &procscan.Process{PID: pid, Comm: "p", OpenFDs: closeWait + 10, StartTime: start}}
}

// TestRingBounded: the in-memory history never holds more than
// retention/interval+1 points per series, forgets processes not seen for
// the retention, and gives only the latest process of a reused pid.
func TestRingBounded(t *testing.T) {
	h := NewRing(time.Minute, 10*time.Second) // 7 points
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 50 {
		procs := []*diagnose.ProcessReport{ringProc(1, i, t0)}
		if i < 5 {
			procs = append(procs, ringProc(2, 1, t0))
		}
		start3 := t0
		if i >= 47 {
			start3 = t0.Add(time.Hour) // pid 3 reused by a new process
		}
		procs = append(procs, ringProc(3, 7, start3))
		r := &diagnose.Report{Snapshot: &snapshot.Snapshot{Time: t0.Add(time.Duration(i) * 10 * time.Second)}, Processes: procs, CloseWait: i}
		if err := h.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := h.Series(1, time.Time{})
	if len(s) != 7 || s[6].CloseWait != 49 || s[0].CloseWait != 43 || s[6].OpenFDs != 59 || s[6].PID != 1 {
		t.Errorf("series of 1: %d points, %+v", len(s), s)
	}
	if s, _ := h.Series(2, time.Time{}); s != nil {
		t.Errorf("process 2 not seen for 45 intervals still has %d points", len(s))
	}
	if s, _ := h.Series(3, time.Time{}); len(s) != 3 {
		t.Errorf("pid 3 reused 3 records ago: %d points of the new process, want 3", len(s))
	}
	tot, _ := h.Totals(t0.Add(480 * time.Second))
	if len(tot) != 2 || tot[0].CloseWait != 48 || tot[1].OpenFDs != 59+17 {
		t.Errorf("totals since 480s: %+v", tot)
	}
	if cap(h.procs[1]) > 8 {
		t.Errorf("series backing array grew to %d", cap(h.procs[1]))
	}
}
