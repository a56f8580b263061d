package agent

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
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
