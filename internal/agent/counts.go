package agent

import (
	"slices"
	"sync"

	"github.com/closewait/closewait/internal/diagnose"
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
// snapshot's keys are kept as one sorted slice (8 bytes a socket), and each
// snapshot is merged against it: no map of every socket. A socket that enters
// and leaves between two scans is not counted; the counters start at zero
// with the agent's first snapshot.
type closeWaitCounts struct {
	mu      sync.Mutex
	started bool
	prev    []uint64 // sorted keys of the previous snapshot's CLOSE_WAIT sockets
	entered uint64
	left    uint64
	procs   map[int]*procCount // by pid: processes holding CLOSE_WAIT in the latest snapshot

	keys []keyIndex // scratch, reused between snapshots
}

// procCount is one process's entered counter; comm tells a reused pid apart.
type procCount struct {
	comm    string
	entered uint64
}

type keyIndex struct {
	key uint64
	i   int32
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
	keys := c.keys[:0]
	for i := range snap.Sockets {
		s := &snap.Sockets[i].Socket
		if s.State != sockdiag.CloseWait {
			continue
		}
		if k, ok := sockKey(s); ok {
			keys = append(keys, keyIndex{k, int32(i)})
		}
	}
	slices.SortFunc(keys, func(a, b keyIndex) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
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

	next := make([]uint64, 0, len(keys))
	j := 0
	var owners []int
	for n, ki := range keys {
		if n > 0 && keys[n-1].key == ki.key {
			continue // the same socket dumped twice (two namespaces' views)
		}
		next = append(next, ki.key)
		for j < len(c.prev) && c.prev[j] < ki.key {
			j++
			c.left++
		}
		if j < len(c.prev) && c.prev[j] == ki.key {
			j++
			continue
		}
		if !c.started {
			continue
		}
		c.entered++
		owners = owners[:0]
		for _, o := range snap.Sockets[ki.i].Owners {
			if !slices.Contains(owners, o.PID) {
				owners = append(owners, o.PID)
				if pc := c.procs[o.PID]; pc != nil {
					pc.entered++
				}
			}
		}
	}
	c.left += uint64(len(c.prev) - j) // nothing before the first snapshot
	c.prev, c.keys, c.started = next, keys[:0], true
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
