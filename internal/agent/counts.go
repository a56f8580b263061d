package agent

import (
	"slices"
	"sync"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// closeWaitCounts counts CLOSE_WAIT sockets entering and leaving between
// successive snapshots (the counters behind closewait_close_wait_entered_total,
// _left_total and closewait_process_close_wait_entered_total), so that
// growth is rate(entered) - rate(left) in PromQL, as on the dashboard.
//
// A socket is known by its kernel cookie (by its inode, with a high bit set,
// on the /proc/net/tcp fallback, which has no cookies). The previous
// snapshot's keys are kept as one sorted slice (8 bytes a socket; with the
// scratch slices, 24 bytes a socket in all), each snapshot's keys are radix
// sorted and merged against it: no map of every socket, and a few
// milliseconds at 100k sockets (BenchmarkCloseWaitCounts). A socket that
// enters and leaves between two scans is not counted; the counters start at
// zero with the agent's first snapshot.
type closeWaitCounts struct {
	mu      sync.Mutex
	started bool
	prev    []uint64  // sorted keys of the previous snapshot's CLOSE_WAIT sockets
	last    time.Time // the time of the snapshot observed last (of prev)
	entered uint64
	left    uint64
	procs   map[int]*procCount // by pid: processes holding CLOSE_WAIT in the latest snapshot

	keys, scratch []uint64 // reused between snapshots
}

// procCount is one process's entered counter; comm tells a reused pid apart.
type procCount struct {
	comm    string
	entered uint64
}

const inodeKey = 1 << 63

func sockKey(s *sockdiag.Socket) (uint64, bool) {
	switch {
	case s.Cookie != 0:
		return s.Cookie &^ inodeKey, true
	case s.Inode != 0:
		return s.Inode | inodeKey, true
	}
	return 0, false
}

// radixSort sorts a (LSD, 11-bit digits, only as many passes as the keys'
// highest bit needs) using tmp, which must be as long; it returns whichever
// of the two holds the result, and whether that is tmp.
func radixSort(a, tmp []uint64) (sorted []uint64, inTmp bool) {
	const bits = 11
	const mask = 1<<bits - 1
	var all uint64
	for _, v := range a {
		all |= v
	}
	var count [1 << bits]int
	src, dst := a, tmp[:len(a)]
	for shift := 0; shift < 64 && all>>shift != 0; shift += bits {
		clear(count[:])
		for _, v := range src {
			count[v>>shift&mask]++
		}
		sum := 0
		for i, c := range count {
			count[i] = sum
			sum += c
		}
		for _, v := range src {
			d := v >> shift & mask
			dst[count[d]] = v
			count[d]++
		}
		src, dst = dst, src
		inTmp = !inTmp
	}
	return src, inTmp
}

// observe counts the sockets of snap that were not in the previous snapshot
// (entered, also per owner process) and those of the previous one that are
// gone (left). procs are the snapshot's judged processes: counters of
// processes no longer holding CLOSE_WAIT are dropped (a later one starts at
// zero again, which rate() reads as a counter reset).
func (c *closeWaitCounts) observe(snap *snapshot.Snapshot, procs []*diagnose.ProcessReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs == nil {
		c.procs = map[int]*procCount{}
	}
	c.followProcs(procs)
	defer func() { c.last = snap.Time }()
	if entered, left, prevTime, ok := snap.Delta(); ok && c.started && prevTime.Equal(c.last) && c.applyDelta(snap, entered, left) {
		return
	}
	keys := c.keys[:0]
	for i := range snap.Sockets {
		s := &snap.Sockets[i].Socket
		if s.State != sockdiag.CloseWait {
			continue
		}
		if k, ok := sockKey(s); ok {
			keys = append(keys, k)
		}
	}
	if cap(c.scratch) < len(keys) {
		c.scratch = make([]uint64, len(keys), cap(keys))
	}
	sorted, inTmp := radixSort(keys, c.scratch[:len(keys)])
	other := c.scratch // the one of the two not holding the result
	if inTmp {
		other = keys
	}
	sorted = slices.Compact(sorted) // the same socket dumped twice (two namespaces' views)

	var fresh map[uint64]bool // keys that entered
	j := 0
	for _, k := range sorted {
		for j < len(c.prev) && c.prev[j] < k {
			j++
			c.left++
		}
		if j < len(c.prev) && c.prev[j] == k {
			j++
			continue
		}
		if c.started {
			if fresh == nil {
				fresh = map[uint64]bool{}
			}
			fresh[k] = true
		}
	}
	c.left += uint64(len(c.prev) - j) // nothing before the first snapshot
	c.entered += uint64(len(fresh))
	if len(fresh) > 0 {
		// A bit per key that entered (a few, usually): the sockets that
		// did not enter cost no map lookup.
		var filter [1 << 12]uint64
		bit := func(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15 >> 20) & (64*uint64(len(filter)) - 1) }
		for k := range fresh {
			b := bit(k)
			filter[b/64] |= 1 << (b % 64)
		}
		for i := range snap.Sockets {
			s := &snap.Sockets[i]
			if s.State != sockdiag.CloseWait {
				continue
			}
			k, ok := sockKey(&s.Socket)
			if !ok {
				continue
			}
			if b := bit(k); filter[b/64]&(1<<(b%64)) == 0 || !fresh[k] {
				continue
			}
			delete(fresh, k) // count a socket dumped twice once
			c.countOwners(s)
		}
	}
	// The sorted keys become prev; the old prev and the other slice are the
	// next snapshot's scratch space.
	c.prev, c.keys, c.scratch, c.started = sorted, c.prev[:0], other[:0], true
}

// followProcs keeps a counter for each process holding CLOSE_WAIT in the
// latest snapshot (procs) and drops the others.
func (c *closeWaitCounts) followProcs(procs []*diagnose.ProcessReport) {
	live := make(map[int]string, len(procs))
	for _, p := range procs {
		live[p.PID] = Comm(p)
	}
	for pid, pc := range c.procs {
		if comm, ok := live[pid]; !ok || comm != pc.comm {
			delete(c.procs, pid)
		}
	}
	for pid, comm := range live {
		if c.procs[pid] == nil {
			c.procs[pid] = &procCount{comm: comm}
		}
	}
}

// countOwners counts a socket that entered for each process holding it.
func (c *closeWaitCounts) countOwners(s *snapshot.Socket) {
	for j, o := range s.Owners {
		if slices.ContainsFunc(s.Owners[:j], func(e procscan.Owner) bool { return e.PID == o.PID }) {
			continue // the same process through another fd
		}
		if pc := c.procs[o.PID]; pc != nil {
			pc.entered++
		}
	}
}

// applyDelta counts a snapshot built from the change feed after the one
// observed last (its Previous) from what changed between them, instead of
// sorting every socket's key: the previous keys less those that left, merged
// with those that entered, a few sequential passes over 8 bytes a socket. It
// returns false, having changed nothing, when the delta is not in cookies
// (the caller then compares every key).
func (c *closeWaitCounts) applyDelta(snap *snapshot.Snapshot, entered []int, left []uint64) bool {
	gone := make([]uint64, 0, len(left))
	for _, ck := range left {
		if ck == 0 {
			return false
		}
		gone = append(gone, ck&^inodeKey) // as sockKey keys it
	}
	var in []uint64
	for _, i := range entered {
		s := &snap.Sockets[i].Socket
		if s.State != sockdiag.CloseWait {
			continue
		}
		if k, ok := sockKey(s); ok {
			in = append(in, k)
		}
	}
	slices.Sort(gone)
	gone = slices.Compact(gone)
	slices.Sort(in)
	in = slices.Compact(in)

	// The previous keys that stay.
	stay := c.keys[:0]
	j := 0
	for _, k := range c.prev {
		for j < len(gone) && gone[j] < k {
			j++
		}
		if j < len(gone) && gone[j] == k {
			c.left++
			continue
		}
		stay = append(stay, k)
	}
	// Merged with those that entered.
	next := c.scratch[:0]
	var fresh map[uint64]bool
	j = 0
	for _, k := range in {
		for j < len(stay) && stay[j] < k {
			next = append(next, stay[j])
			j++
		}
		if j < len(stay) && stay[j] == k {
			continue // listed before: not new
		}
		next = append(next, k)
		if fresh == nil {
			fresh = map[uint64]bool{}
		}
		fresh[k] = true
	}
	next = append(next, stay[j:]...)
	c.entered += uint64(len(fresh))
	for _, i := range entered {
		s := &snap.Sockets[i]
		if k, ok := sockKey(&s.Socket); ok && s.State == sockdiag.CloseWait && fresh[k] {
			delete(fresh, k) // count a socket listed twice once
			c.countOwners(s)
		}
	}
	c.prev, c.keys, c.scratch = next, stay[:0], c.prev[:0]
	return true
}

// totals returns the host's counters.
func (c *closeWaitCounts) totals() (entered, left uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entered, c.left
}

// process returns a process's entered counter, and whether it has one.
func (c *closeWaitCounts) process(pid int, comm string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.procs[pid]
	if pc == nil || pc.comm != comm {
		return 0, false
	}
	return pc.entered, true
}
