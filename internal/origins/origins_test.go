package origins

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockorigin"
	"github.com/closewait/closewait/internal/symbolize"
)

// TestBuildGroupsSelectsAndCounts joins recorded sockets with a snapshot:
// only those in CLOSE_WAIT count, grouped by process and stack, with the
// closed count of their kernel stack, worst first, bounded per process and
// in processes. The processes do not exist under the procfs root given, so
// frames stay unnamed and say why.
func TestBuildGroupsSelectsAndCounts(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cw := func(cookie uint64, recvq uint32, ageMS uint32) snapshot.Socket {
		return snapshot.Socket{Socket: sockdiag.Socket{State: sockdiag.CloseWait, Cookie: cookie, RecvQ: recvq, HasInfo: true, Info: sockdiag.TCPInfo{LastAckRecv: ageMS}}}
	}
	snap := &snapshot.Snapshot{
		Time: now,
		Sockets: []snapshot.Socket{
			cw(1, 0, 5000), cw(2, 0, 9000), cw(3, 1, 1000), // pid 10, stack 1
			cw(4, 0, 2000),                 // pid 10, stack 2
			cw(5, 0, 1000), cw(6, 0, 1000), // pid 20, stack 1
			{Socket: sockdiag.Socket{State: sockdiag.Established, Cookie: 7}},
		},
		Processes: map[int]*procscan.Process{10: {PID: 10, Comm: "svc"}, 20: {PID: 20, Comm: "other"}},
	}
	rec := func(cookie uint64, pid uint32, stack uint64, created time.Duration) sockorigin.Socket {
		return sockorigin.Socket{Cookie: cookie, TGID: pid, How: sockorigin.Connected, Created: now.Add(-created),
			Key: sockorigin.StackKey{TGID: pid, StackID: stack}}
	}
	smp := &sockorigin.Sample{
		Sockets: []sockorigin.Socket{
			rec(1, 10, 1, time.Minute), rec(2, 10, 1, time.Minute), rec(3, 10, 1, 4*time.Second), // age capped at creation
			rec(4, 10, 2, time.Minute),
			rec(5, 20, 1, time.Minute), rec(6, 20, 1, time.Minute),
			rec(7, 10, 1, time.Minute), // ESTABLISHED: not an origin's socket
			rec(8, 10, 1, time.Minute), // not in the snapshot any more
			rec(0, 10, 1, time.Minute), // no cookie (namespace not visited)
		},
		Closed:  map[sockorigin.StackKey]uint64{{TGID: 10, StackID: 1}: 997, {TGID: 20, StackID: 1}: 3},
		Stacks:  map[uint64][]uint64{1: {0x1000, 0x2000}, 2: {0x1000, 0x3000}},
		Dropped: 4,
	}
	sym := symbolize.New(t.TempDir()) // no processes there
	defer sym.Close()

	type row struct {
		PID, Count int
		Closed     uint64
		Oldest     float64
		Cause      string
		Frames     int
	}
	rows := func(r *Report) []row {
		var out []row
		for _, o := range r.Origins {
			out = append(out, row{o.PID, o.Count, o.Closed, o.OldestAgeSeconds, o.Cause, len(o.Frames)})
			if o.Hint == "" {
				t.Errorf("origin of pid %d: unnamed frames and no hint", o.PID)
			}
		}
		return out
	}
	all := Build(smp, snap, sym, Options{})
	want := []row{
		{10, 3, 997, 9, "missing-close", 2},
		{20, 2, 3, 1, "missing-close", 2},
		{10, 1, 0, 2, "missing-close", 2},
	}
	if diff := cmp.Diff(want, rows(all)); diff != "" {
		t.Errorf("Build (-want +got):\n%s", diff)
	}
	if all.Dropped != 4 || all.Recorded != 9 || all.Unmatched != 2 || all.UnsymbolisedFrames != 6 {
		t.Errorf("dropped %d recorded %d unmatched %d unsymbolised %d, want 4 9 2 6", all.Dropped, all.Recorded, all.Unmatched, all.UnsymbolisedFrames)
	}
	for _, tc := range []struct {
		name string
		opt  Options
		want []row
	}{
		{"max", Options{Max: 1}, want[:1]},
		{"per process", Options{PerProcess: 1}, want[:2]},
		{"processes", Options{MaxProcesses: 1}, []row{want[0], want[2]}},
		{"pids", Options{PIDs: map[int]bool{20: true}}, want[1:2]},
	} {
		if diff := cmp.Diff(tc.want, rows(Build(smp, snap, sym, tc.opt))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
