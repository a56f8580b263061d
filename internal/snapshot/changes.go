package snapshot

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/closewait/closewait/internal/sockdiag"
)

// Changes is a kernel feed of TCP sockets entering and leaving CLOSE_WAIT:
// the eBPF feed of package sockevents, for one.
type Changes interface {
	// Drain calls fn for every change since the last Drain, oldest first;
	// complete is false when some changes were lost.
	Drain(fn func(*sockdiag.StateChange)) (complete bool, err error)
	// Drains counts the Drain calls that returned without error.
	Drains() uint64
}

// Values of Stats.Changes.
const (
	// ChangesFull: the feed was drained, then every CLOSE_WAIT socket dumped.
	ChangesFull = "full"
	// ChangesApplied: the CLOSE_WAIT sockets are the previous snapshot's with
	// the feed's changes applied; only the other states were dumped.
	ChangesApplied = "applied"
)

// maxRelook bounds the carried sockets without an inode (waiting in an
// accept queue) looked up again on each applied snapshot, to see whether
// the server accepted them since.
const maxRelook = 1000

// changeSet is what one drain of the feed says about the CLOSE_WAIT set.
type changeSet struct {
	apply   bool                                  // build the set from Previous and the changes
	left    map[uint64]bool                       // cookies that left CLOSE_WAIT
	entered map[uint64]map[uint64]sockdiag.Socket // netns -> cookie -> socket that entered
	runs    map[uint64][][2]int                   // netns -> runs of Previous.Sockets in it
	relook  int                                   // accept-queue sockets looked up again so far
	// leftFilter answers most "did it leave?" questions without a lookup
	// in left: a carried socket costs no map operation.
	leftFilter cookieFilter
	// The namespaces applyChanges started to list, and those it listed.
	started, done map[uint64]bool
}

// delta is how a snapshot built from the change feed differs from its
// Previous (Snapshot.Delta).
type delta struct {
	valid    bool
	prevTime time.Time
	entered  []int    // indices in Sockets of the sockets not in Previous
	left     []uint64 // cookies of Previous's sockets not in Sockets
}

// endDelta completes the delta once every namespace is listed: the sockets
// of Previous's namespaces not listed this time (gone, or not readable any
// more) left too.
func (snap *Snapshot) endDelta(cs *changeSet, prev *Snapshot) {
	for ns := range cs.started {
		if !cs.done[ns] {
			return // a namespace's listing failed half-way: no delta
		}
	}
	for ns, runs := range cs.runs {
		if cs.done[ns] {
			continue
		}
		for _, run := range runs {
			for i := run[0]; i < run[1]; i++ {
				snap.delta.left = append(snap.delta.left, prev.Sockets[i].Cookie)
			}
		}
	}
	snap.delta.valid, snap.delta.prevTime = true, prev.Time
}

// Delta says how a snapshot built from the change feed (Stats.Changes
// ChangesApplied) differs from its Previous, taken at prevTime: entered are
// the indices in Sockets of the sockets Previous did not list, left the
// cookies of Previous's sockets this one does not list. ok is false for a
// snapshot dumped in full. A caller that saw Previous can follow the set
// of CLOSE_WAIT sockets at the cost of what changed.
func (snap *Snapshot) Delta() (entered []int, left []uint64, prevTime time.Time, ok bool) {
	d := &snap.delta
	return d.entered, d.left, d.prevTime, d.valid
}

// cookieFilter is a set of cookies with false positives (one hash bit per
// cookie, 16 bits a cookie): a clear bit says the cookie is not in the set.
type cookieFilter []uint64

func newCookieFilter[V any](set map[uint64]V) cookieFilter {
	words := 1
	for words*64 < 16*len(set) {
		words *= 2
	}
	f := make(cookieFilter, words)
	for c := range set {
		b := f.bit(c)
		f[b/64] |= 1 << (b % 64)
	}
	return f
}

func (f cookieFilter) bit(c uint64) uint64 {
	return (c * 0x9E3779B97F4A7C15 >> 17) & uint64(len(f)*64-1)
}

// has reports whether c may be in the set (always, for a nil filter).
func (f cookieFilter) has(c uint64) bool {
	if f == nil {
		return true
	}
	b := f.bit(c)
	return f[b/64]&(1<<(b%64)) != 0
}

// drainChanges drains opt.Changes and decides whether this snapshot can be
// built from Previous and the changes: only when Previous was taken right
// before on the same feed (no drain in between, none failed), nothing was
// lost, and the caller accepts carried details (CarryInfo) for a
// CLOSE_WAIT-only snapshot. It returns nil without a feed.
func (snap *Snapshot) drainChanges(opt config) *changeSet {
	feed := opt.Changes
	if feed == nil {
		return nil
	}
	prev := opt.Previous
	usable := prev != nil && prev.changesSynced && prev.changeSeq == feed.Drains() &&
		opt.CarryInfo && !opt.ForceProcNet && prev.Stats.Source == "netlink" &&
		snap.Detail == sockdiag.NewStateSet(sockdiag.CloseWait) && prev.Detail == snap.Detail
	cs := &changeSet{left: map[uint64]bool{}, entered: map[uint64]map[uint64]sockdiag.Socket{}}
	n := 0
	complete, err := feed.Drain(func(e *sockdiag.StateChange) {
		n++
		s := e.Socket
		if e.Entered() {
			if cs.entered[s.NetNS] == nil {
				cs.entered[s.NetNS] = map[uint64]sockdiag.Socket{}
			}
			cs.entered[s.NetNS][s.Cookie] = s
			return
		}
		delete(cs.entered[s.NetNS], s.Cookie)
		cs.left[s.Cookie] = true
	})
	if err != nil {
		// The feed cannot be trusted until a snapshot drains it fine.
		snap.Notices = append(snap.Notices, "socket change feed not read ("+err.Error()+"): every CLOSE_WAIT socket dumped")
		return nil
	}
	snap.changesSynced, snap.changeSeq = true, feed.Drains()
	snap.Stats.ChangeEvents = n
	snap.Stats.Changes = ChangesFull
	if !usable || !complete {
		return nil
	}
	snap.Stats.Changes = ChangesApplied
	cs.apply = true
	cs.leftFilter = newCookieFilter(cs.left)
	cs.started, cs.done = map[uint64]bool{}, map[uint64]bool{}
	cs.runs = map[uint64][][2]int{}
	if prev.runsOK() {
		for _, r := range prev.nsRuns {
			cs.runs[r.netns] = append(cs.runs[r.netns], [2]int{r.start, r.end})
		}
		return cs
	}
	for i := 0; i < len(prev.Sockets); {
		j, ns := i+1, prev.Sockets[i].NetNS
		for j < len(prev.Sockets) && prev.Sockets[j].NetNS == ns {
			j++
		}
		cs.runs[ns] = append(cs.runs[ns], [2]int{i, j})
		i = j
	}
	return cs
}

// runsOK reports whether nsRuns cover Sockets exactly, in order (then the
// namespace of each socket is its run's).
func (snap *Snapshot) runsOK() bool {
	at := 0
	for _, r := range snap.nsRuns {
		if r.start != at {
			return false
		}
		at = r.end
	}
	return at == len(snap.Sockets)
}

// applyChanges dumps every state but CLOSE_WAIT of c's namespace, then
// lists its CLOSE_WAIT sockets: the previous snapshot's that did not leave,
// with their tcp_info advanced as in carryInfo, and those that entered since,
// looked up exactly, all in one batch (which gives their inode, queues and
// tcp_info).
func (d *dumper) applyChanges(c *sockdiag.Conn) error {
	rest := sockdiag.AllStates &^ sockdiag.NewStateSet(sockdiag.CloseWait)
	if err := c.Dump(sockdiag.Request{States: rest}, d.keep); err != nil {
		return fmt.Errorf("list sockets: %w", err)
	}
	cs, prev, ns := d.changes, d.opt.Previous, c.NetNS()
	entered := cs.entered[ns]
	dt := max(d.snap.Time.Sub(prev.Time), 0)
	start := len(d.snap.Sockets)
	cs.started[ns] = true
	var ask []sockdiag.Socket // looked up in one batch: accepted since, or new
	enteredFilter := newCookieFilter(entered)
	for _, run := range cs.runs[ns] {
		for i := run[0]; i < run[1]; i++ {
			p := &prev.Sockets[i].Socket
			if cs.leftFilter.has(p.Cookie) && cs.left[p.Cookie] {
				d.snap.delta.left = append(d.snap.delta.left, p.Cookie)
				continue
			}
			if len(entered) > 0 && enteredFilter.has(p.Cookie) {
				delete(entered, p.Cookie) // already known: an event from before Previous's dump
			}
			if p.Inode == 0 && cs.relook < maxRelook {
				// Waiting in an accept queue last time: accepted since?
				cs.relook++
				ask = append(ask, *p)
				continue
			}
			// Appended in place (a snapshot.Socket is 250 bytes: one copy).
			d.snap.Sockets = append(d.snap.Sockets, Socket{Socket: *p})
			s := &d.snap.Sockets[len(d.snap.Sockets)-1]
			if p.Inode != 0 {
				s.Owners = prev.Sockets[i].Owners // checked again by findOwners
			}
			if s.HasInfo {
				advanceInfo(&s.Info, dt)
			}
		}
	}
	if end := len(d.snap.Sockets); end > start {
		d.snap.carried = append(d.snap.carried, [2]int{start, end})
	}
	relooks := len(ask) // ask[:relooks] were in Previous
	for _, cookie := range slices.Sorted(maps.Keys(entered)) {
		ask = append(ask, entered[cookie])
	}
	errs, err := c.LookupAll(ask)
	if err != nil {
		return fmt.Errorf("look up sockets new in CLOSE_WAIT: %w", err)
	}
	for i := range ask {
		if errs[i] != nil || ask[i].State != sockdiag.CloseWait {
			if i < relooks {
				d.snap.delta.left = append(d.snap.delta.left, ask[i].Cookie)
			}
			continue // gone again, or moved on
		}
		ask[i].NetNS = ns
		if i >= relooks {
			d.snap.delta.entered = append(d.snap.delta.entered, len(d.snap.Sockets))
		}
		d.snap.Sockets = append(d.snap.Sockets, Socket{Socket: ask[i]})
	}
	cs.done[ns] = true
	d.snap.States[sockdiag.CloseWait] += len(d.snap.Sockets) - start
	return nil
}

// advanceInfo moves tcp_info's "milliseconds since" fields forward by dt.
func advanceInfo(ti *sockdiag.TCPInfo, dt time.Duration) {
	ms := dt.Milliseconds()
	advance := func(v uint32) uint32 { return uint32(min(int64(v)+ms, math.MaxUint32)) }
	ti.LastDataSent = advance(ti.LastDataSent)
	ti.LastAckRecv = advance(ti.LastAckRecv)
	ti.LastDataRecv = advance(ti.LastDataRecv)
}
