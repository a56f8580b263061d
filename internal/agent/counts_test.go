package agent

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockevents"
)

// snapOf is a snapshot of CLOSE_WAIT sockets with these cookies, each held
// by pid cookie%procs+1.
func snapOf(cookies []uint64, procs int) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Time: time.Unix(1_700_000_000, 0), Sockets: make([]snapshot.Socket, len(cookies))}
	for i, c := range cookies {
		s.Sockets[i].Socket = sockdiag.Socket{State: sockdiag.CloseWait, Cookie: c, Inode: c + 1000}
		s.Sockets[i].Owners = []procscan.Owner{{PID: int(c%uint64(procs)) + 1, FD: 3}}
	}
	return s
}

func reportsOf(procs int) []*diagnose.ProcessReport {
	out := make([]*diagnose.ProcessReport, procs)
	for i := range out {
		out[i] = &diagnose.ProcessReport{PID: i + 1, Process: &procscan.Process{PID: i + 1, Comm: "p"}}
	}
	return out
}

// TestCloseWaitCountsDiff: entered and left between snapshots, per owner,
// the first snapshot counting nothing, a socket dumped twice counted once.
func TestCloseWaitCountsDiff(t *testing.T) {
	var c closeWaitCounts
	procs := reportsOf(2)
	c.observe(snapOf([]uint64{10, 11, 12, 12}, 2), procs) // pid 1: 10, 12; pid 2: 11
	if in, out := c.totals(); in != 0 || out != 0 {
		t.Fatalf("after the first snapshot: entered %d left %d, want 0 0", in, out)
	}
	c.observe(snapOf([]uint64{12, 13, 14, 15}, 2), procs) // 10, 11 left; 13 (pid 2), 14 (pid 1), 15 (pid 2) entered
	if in, out := c.totals(); in != 3 || out != 2 {
		t.Errorf("entered %d left %d, want 3 2", in, out)
	}
	if n, _ := c.process(1, "p"); n != 1 {
		t.Errorf("pid 1 entered %d, want 1", n)
	}
	if n, _ := c.process(2, "p"); n != 2 {
		t.Errorf("pid 2 entered %d, want 2", n)
	}
	if _, ok := c.process(2, "other"); ok {
		t.Errorf("a reused pid with another comm keeps the counter")
	}
	c.observe(snapOf(nil, 2), procs[:1]) // everything left; pid 2 no longer holds any
	if in, out := c.totals(); in != 3 || out != 6 {
		t.Errorf("entered %d left %d, want 3 6", in, out)
	}
	if _, ok := c.process(2, "p"); ok {
		t.Errorf("pid 2 holds no CLOSE_WAIT but keeps its counter")
	}
}

// BenchmarkCloseWaitCounts measures the counters' diff per scan at 100k and
// 1M CLOSE_WAIT sockets, 1% of them new each scan (no kernel involved):
//
//	go test ./internal/agent -run '^$' -bench CloseWaitCounts
func BenchmarkCloseWaitCounts(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			procs := reportsOf(6)
			cookies := make([]uint64, n)
			for i := range cookies {
				cookies[i] = uint64(i)*7919 + 1
			}
			// The dump's order is the kernel's hash table's, not the cookies'.
			rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { cookies[i], cookies[j] = cookies[j], cookies[i] })
			var c closeWaitCounts
			c.observe(snapOf(cookies, 6), procs)
			snaps := []*snapshot.Snapshot{}
			for k := 0; k < 2; k++ {
				next := append([]uint64(nil), cookies[n/100:]...)
				for i := 0; i < n/100; i++ {
					next = append(next, uint64(n+k*n+i)*7919+2)
				}
				snaps = append(snaps, snapOf(next, 6))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.observe(snaps[i%2], procs)
			}
		})
	}
}

// TestCloseWaitCountsDelta: snapshots built from the change feed are
// counted from their delta (no sort of every key), with the very counters
// and keys a comparison of every key gives, on real sockets entering and
// leaving CLOSE_WAIT between snapshots.
func TestCloseWaitCountsDelta(t *testing.T) {
	feed, err := sockevents.Open()
	cwtest.SkipIfNotSupported(t, err, sockevents.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	var byDelta, byKeys closeWaitCounts
	var prev *snapshot.Snapshot
	holders := map[string]*cwtest.Holder{"first": cwtest.Start(t, cwtest.Spec{Unread: 3})}
	for i, step := range []struct {
		name    string
		start   string // a holder started before the snapshot
		stop    string // and one stopped (its sockets leave CLOSE_WAIT)
		entered int    // the started holder's sockets counted as entered
	}{
		{name: "first snapshot"},
		{name: "one starts", start: "second", entered: 3},
		{name: "one starts, one stops", start: "third", stop: "first", entered: 2},
		{name: "one stops", stop: "second"},
	} {
		if step.start != "" {
			holders[step.start] = cwtest.Start(t, cwtest.Spec{Unread: step.entered - 1, ReadEOF: 1})
		}
		if step.stop != "" {
			holders[step.stop].Stop()
		}
		succ := snapshot.Successive{Previous: prev, Changes: feed}
		if prev != nil {
			succ.CarryInfo, succ.ReuseByProcess, succ.SkipUnowned = true, true, true
		}
		snap, err := snapshot.TakeAfter(snapshot.Options{}, succ)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, ok := snap.Delta(); ok != (i > 0) {
			t.Fatalf("%s: Delta ok = %v (Stats.Changes %q)", step.name, ok, snap.Stats.Changes)
		}
		procs := diagnose.Analyze(snap, diagnose.DefaultThresholds, diagnose.Options{}).Processes
		byDelta.observe(snap, procs)
		byKeys.last = time.Time{} // no delta applies: every key compared
		byKeys.observe(snap, procs)
		if !slices.Equal(byDelta.prev, byKeys.prev) {
			t.Fatalf("%s: %d keys from the delta, %d from every socket, not the same", step.name, len(byDelta.prev), len(byKeys.prev))
		}
		din, dout := byDelta.totals()
		kin, kout := byKeys.totals()
		if din != kin || dout != kout {
			t.Errorf("%s: entered %d left %d from the delta, %d %d from every key", step.name, din, dout, kin, kout)
		}
		if step.start != "" {
			h := holders[step.start]
			found := false
			for _, p := range procs {
				if p.PID != h.PID {
					continue
				}
				found = true
				dn, _ := byDelta.process(h.PID, Comm(p))
				kn, _ := byKeys.process(h.PID, Comm(p))
				if dn != uint64(step.entered) || kn != dn {
					t.Errorf("%s: the new holder entered %d from the delta, %d from every key, want %d", step.name, dn, kn, step.entered)
				}
			}
			if !found {
				t.Errorf("%s: the new holder (pid %d) is not among the snapshot's processes", step.name, h.PID)
			}
		}
		prev = snap
	}
}
