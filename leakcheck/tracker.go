package leakcheck

import (
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// DefaultStackDepth is the number of program counters recorded per stack
// when [Options.StackDepth] is zero.
const DefaultStackDepth = 32

// maxStackDepth bounds [Options.StackDepth]; stacks are captured into a
// fixed-size buffer on the goroutine's stack.
const maxStackDepth = 64

// numShards is the number of independently locked lists of live
// connections. A power of two.
const numShards = 16

// Options configures a [Tracker]. The zero value is ready to use: every
// connection's stacks are recorded, nothing is logged.
type Options struct {
	// SampleRate records the stacks of one connection in SampleRate.
	// Zero means 1: every connection. A negative value records no stacks
	// at all (connections are still tracked and checked, and reported in
	// one group without a stack). Stacks are stored as raw program
	// counters and symbolized only when a report is built.
	SampleRate int

	// StackDepth is the maximum number of frames kept per stack. Zero
	// means DefaultStackDepth; values above 64 are lowered to 64.
	StackDepth int

	// RuntimeCallers captures stacks with runtime.Callers instead of
	// following frame pointers (the default on amd64, ~10x faster). Set
	// it if Go code called back from C creates or reads tracked
	// connections: frame pointers through C frames may be unreliable, as
	// the runtime's own execution tracer assumes. GODEBUG
	// tracefpunwindoff=1 has the same effect.
	RuntimeCallers bool

	// MinAge leaves out of reports the CLOSE_WAIT connections whose
	// peer closed less than MinAge ago (counted in Report.Young
	// instead): a connection whose FIN has just arrived is usually about
	// to be closed by its handler. Zero reports every one.
	MinAge time.Duration

	// Logger receives one line from [Tracker.Watch] whenever the number
	// of leaked connections grows. Nil means no logging.
	Logger *slog.Logger

	// OnLeak is called by [Tracker.Watch] with every report that has at
	// least one connection in CLOSE_WAIT. Nil means no callback. It runs
	// on the Watch goroutine.
	OnLeak func(*Report)
}

// Tracker records the live connections created through its wrappers and
// asks the kernel which of them are in CLOSE_WAIT. A Tracker is safe for
// concurrent use. Create one with [New]; most programs need only one.
//
// A Tracker runs one goroutine, a clock that wakes every 50ms, which exits
// after the Tracker has been garbage collected.
//
// A Tracker never extends the life of a connection: it holds connections
// weakly, so a connection that the program drops without closing is still
// closed by the Go runtime's finalizer when it is garbage collected (and
// then leaves the tracker).
type Tracker struct {
	opts   Options
	rate   uint64 // 0: no stacks
	depth  int
	fp     bool // unwind with frame pointers
	nextID atomic.Uint64
	live   atomic.Int64
	clock  *coarseClock
	shards [numShards]shard
}

type shard struct {
	mu   sync.Mutex
	head *record
	_    [40]byte // keep shards on separate cache lines
}

// New returns a Tracker configured by opts; nil means the zero Options.
func New(opts *Options) *Tracker {
	t := &Tracker{}
	if opts != nil {
		t.opts = *opts
	}
	switch {
	case t.opts.SampleRate == 0:
		t.rate = 1
	case t.opts.SampleRate > 0:
		t.rate = uint64(t.opts.SampleRate)
	}
	t.depth = t.opts.StackDepth
	if t.depth <= 0 {
		t.depth = DefaultStackDepth
	}
	if t.depth > maxStackDepth {
		t.depth = maxStackDepth
	}
	t.fp = haveFP && !t.opts.RuntimeCallers && !godebugFPOff()
	startClock(t)
	return t
}

// Len returns the number of connections currently tracked: created
// through the Tracker's wrappers and not yet closed (or collected).
func (t *Tracker) Len() int { return int(t.live.Load()) }

// direction says which side opened a tracked connection.
type direction uint8

const (
	dirInbound  direction = iota + 1 // accepted from a listener
	dirOutbound                      // dialed
	dirOther                         // passed to Tracker.Track
)

// record is the tracker's view of one live connection. It must not hold a
// strong reference to the connection wrapper, or leaked connections could
// never be collected.
type record struct {
	t       *Tracker
	id      uint64
	dir     direction
	sampled bool
	created int64 // unix nanoseconds
	local   net.Addr
	remote  net.Addr
	w       weak.Pointer[conn]
	cleanup runtime.Cleanup

	createdAt []uintptr // immutable after track

	lastRead  atomic.Int64 // unix nanoseconds from the coarse clock, 0 = never
	lastWrite atomic.Int64
	sawEOF    atomic.Bool

	firstRead atomic.Pointer[[]uintptr]
	readErr   atomic.Pointer[[]uintptr] // latest failed Read

	// The stack of the latest HTTP request that used the conn, rewritten
	// in place on every request.
	reqMu  sync.Mutex
	reqPCs []uintptr

	// guarded by the shard mutex
	prev, next *record
	removed    bool
}

func (t *Tracker) shardOf(r *record) *shard { return &t.shards[r.id&(numShards-1)] }

// track wraps c and starts tracking it. skip is the number of frames
// between the caller of track and the user code that created c.
func (t *Tracker) track(c net.Conn, dir direction, skip int) *conn {
	id := t.nextID.Add(1)
	r := &record{
		t:       t,
		id:      id,
		dir:     dir,
		sampled: t.rate != 0 && id%t.rate == 0,
		created: time.Now().UnixNano(),
		local:   c.LocalAddr(),
		remote:  c.RemoteAddr(),
	}
	if r.sampled {
		r.createdAt = t.capture(skip + 1)
	}
	w := &conn{Conn: c, rec: r}
	r.w = weak.Make(w)
	r.cleanup = runtime.AddCleanup(w, (*record).remove, r)

	s := t.shardOf(r)
	s.mu.Lock()
	r.next = s.head
	if s.head != nil {
		s.head.prev = r
	}
	s.head = r
	s.mu.Unlock()
	t.live.Add(1)
	return w
}

// remove stops tracking r. It is idempotent.
func (r *record) remove() {
	t := r.t
	s := t.shardOf(r)
	s.mu.Lock()
	if r.removed {
		s.mu.Unlock()
		return
	}
	r.removed = true
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		s.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	}
	r.prev, r.next = nil, nil
	s.mu.Unlock()
	t.live.Add(-1)
}

// snapshot returns the records tracked at this moment.
func (t *Tracker) snapshot() []*record {
	out := make([]*record, 0, t.Len())
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for r := s.head; r != nil; r = r.next {
			out = append(out, r)
		}
		s.mu.Unlock()
	}
	return out
}

// godebugFPOff reports whether GODEBUG turns frame-pointer unwinding off
// for the runtime's tracer (tracefpunwindoff=1); leakcheck follows it.
func godebugFPOff() bool {
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if strings.TrimSpace(kv) == "tracefpunwindoff=1" {
			return true
		}
	}
	return false
}

// setRequest records the current goroutine's stack as r's latest request.
func (r *record) setRequest() {
	var buf [maxStackDepth]uintptr
	n := r.t.captureInto(buf[:r.t.depth], 2)
	r.reqMu.Lock()
	if cap(r.reqPCs) < n {
		r.reqPCs = make([]uintptr, n, r.t.depth)
	}
	r.reqPCs = r.reqPCs[:n]
	copy(r.reqPCs, buf[:n])
	r.reqMu.Unlock()
}

// requestStack returns a copy of the latest request's stack, or nil.
func (r *record) requestStack() *[]uintptr {
	r.reqMu.Lock()
	defer r.reqMu.Unlock()
	if len(r.reqPCs) == 0 {
		return nil
	}
	pcs := slices.Clone(r.reqPCs)
	return &pcs
}

// capture records the caller's stack, skipping skip frames above the
// caller of capture. Where frame pointers can be followed (amd64) skip is
// ignored: the extra frames belong to this package and are dropped when
// the stack is symbolized.
func (t *Tracker) capture(skip int) []uintptr {
	var buf [maxStackDepth]uintptr
	n := t.captureInto(buf[:t.depth], skip+1)
	pcs := make([]uintptr, n)
	copy(pcs, buf[:n])
	return pcs
}

// captureInto is capture into buf.
func (t *Tracker) captureInto(buf []uintptr, skip int) int {
	if t.fp {
		return fpCallers(buf)
	}
	return runtime.Callers(skip+2, buf)
}
