package diagnose

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/closewait/closewait/internal/snapshot"
)

// Analyzer judges successive snapshots, as watch and agent take them, and
// reuses what it worked out for each process whose CLOSE_WAIT sockets did
// not change. Its reports are exactly those of [Analyze] for the same
// inputs.
//
// It remembers, per process (pid and start time), the sequence of its
// sockets (the kernel's cookie, else the inode) with the facts that place
// each one in a finding (direction, listening port or remote address,
// accept queue, Recv-Q 0, 1 or more, the pool-idle time), and checks every
// socket of the next snapshot against it, in dump order. A socket found
// with the same facts keeps its part without a map lookup, and its answer
// for a growth baseline it was already compared with; a part whose sockets
// are all found, as many as before, keeps its distinct peers and its
// idle-timeout median; a finding whose counts and context (pid, runtime,
// user, listening ports, container, threads) are unchanged keeps its text.
// What moves with time is taken from each snapshot: ages and everything
// written from them (oldest, the line of ages, normal half-close or not),
// Recv-Q bytes, keepalive timers, fds, growth, thresholds.
//
// Memory: about 120 bytes per CLOSE_WAIT socket of the last snapshot.
// An Analyzer is not safe for concurrent use.
type Analyzer struct {
	procs map[procID]*procCache
	gen   uint64        // counts Analyze calls; marks the caches kept by this one
	stats analyzerStats // of the last call, for tests
}

// analyzerStats count, in one call, the sockets taken, those found unchanged
// in the cache, the parts whose derived results were recounted and the
// findings' texts written.
type analyzerStats struct{ sockets, matched, recounted, written int }

// NewAnalyzer returns an Analyzer with nothing remembered.
func NewAnalyzer() *Analyzer {
	return &Analyzer{procs: map[procID]*procCache{}}
}

// Analyze judges a snapshot against thresholds, like the package's
// [Analyze], reusing what the previous calls worked out for processes whose
// CLOSE_WAIT sockets did not change, and remembering this snapshot's for
// the next call. Processes absent from this snapshot are forgotten.
func (a *Analyzer) Analyze(snap *snapshot.Snapshot, th Thresholds, opt Options) *Report {
	return analyze(a, snap, th, opt)
}

// procID identifies a process across snapshots: a pid reused by a new
// process starts afresh. (Nothing cached depends on the process itself, only
// on its sockets, which are checked one by one; this only keeps the cache
// from following a pid.)
type procID struct {
	pid   int
	start int64 // start time, Unix ns; 0 when its facts are missing
}

func procIDOf(p *ProcessReport) procID {
	id := procID{pid: p.PID}
	if p.Process != nil && !p.Process.StartTime.IsZero() {
		id.start = p.Process.StartTime.UnixNano()
	}
	return id
}

// sockEntry is what an Analyzer remembers of one socket: its key and the
// facts that place it in a part of a finding and that the part's derived
// results are made of (two sockets with equal facts land in the same part
// and count alike there), and that part.
type sockEntry struct {
	key    sockKey
	remote netip.AddrPort
	idle   uint32 // ms, last_data_recv − last_ack_recv, with factIdle
	part   int32  // group*numCauses + cause
	lport  uint16 // listening port, inbound
	flags  uint8
	cause  uint8 // index into socketCauses
}

const (
	factInbound     = 1 << iota // accepted from a listener (lport is its port)
	factNotAccepted             // in the accept queue
	factRecvQ0                  // Recv-Q 0
	factRecvQ1                  // Recv-Q 1 (else more)
	factIdle                    // an idle estimate of its cause (idle)
)

// factsOf are the facts of a socket besides its key and remote address.
// (Scalars, not an entry: they stay in registers for the comparison.)
func factsOf(s *snapshot.Socket) (flags uint8, lport uint16, idle uint32, cause uint8) {
	if s.Inbound() {
		flags |= factInbound
		lport = s.Listener().Port()
	}
	if s.NotAccepted {
		flags |= factNotAccepted
	}
	switch s.RecvQ {
	case 0:
		flags |= factRecvQ0
	case 1:
		flags |= factRecvQ1
	}
	ci := causeOf(s)
	if c := socketCauses[ci]; c.idle != nil {
		if ms, ok := c.idle(s); ok {
			flags |= factIdle
			idle = ms
		}
	}
	return flags, lport, idle, uint8(ci)
}

// same reports whether e and o are the same socket with the same facts.
func (e *sockEntry) same(o *sockEntry) bool {
	return e.key == o.key && e.remote == o.remote && e.flags == o.flags && e.lport == o.lport && e.idle == o.idle && e.cause == o.cause
}

// is reports whether e is the socket s with key k and the facts given.
func (e *sockEntry) is(s *snapshot.Socket, k sockKey, flags uint8, lport uint16, idle uint32, cause uint8) bool {
	return e.key == k && e.remote == s.Remote && e.flags == flags && e.lport == lport && e.idle == idle && e.cause == cause
}

// procCache is what an Analyzer remembers of one process.
type procCache struct {
	// ents are the process's CLOSE_WAIT sockets in the last snapshot, in
	// its order.
	ents []sockEntry
	// inBase has a bit per socket of ents: it was among base's sockets of
	// the process (growth). Valid when base is not nil.
	inBase []uint64
	base   *Baseline
	// spare buffers of the same, for the next call to fill.
	spareEnts   []sockEntry
	spareInBase []uint64
	matched     []uint64 // bit per socket of ents: matched in this call

	// Groups seen (a listening port or a remote), numbered in order of
	// appearance; a number stays for the life of the cache.
	groups  []groupKey
	groupOf map[groupKey]int32
	// parts are per part: its socket count last time and its derived
	// results when they are valid for those sockets.
	parts []partCache
	// merged are the derived results of the merged "other" group's parts,
	// per direction (0 inbound, 1 outbound) and cause.
	merged [2][]mergedCache // numCauses each
	acc    []partAcc        // spare for procWork.acc
	gen    uint64           // the Analyze call that last kept it
	// texts are the findings' texts of the last call, by what they say.
	texts map[textKey]*textEntry

	pos map[sockKey]int32 // position of each key, built when the cursor gets lost
}

type textEntry struct {
	t   *findingText
	gen uint64 // the last call that used it
}

type partCache struct {
	n     int
	valid bool
	d     derived
}

type mergedCache struct {
	valid   bool
	members []int32 // the groups merged, sorted
	d       derived
}

// derived are the results of a part that are costly to recount: its
// distinct peer addresses (inbound) and its idle-timeout estimate
// (pool-idle). They depend on the multiset of the part's facts only.
type derived struct {
	peers            int
	peer             netip.Addr // the peer, when there is one
	idleMed, idleMin float64
	idleN            int
}

// partAcc sums what a part's finding says of its sockets, over one snapshot.
type partAcc struct {
	n, keepalive, withData, nAges int
	goodbye                       int    // outbound sockets with unread data and the FIN (pool-idle)
	maxQ, minQ                    uint32 // minQ: the least Recv-Q of those with data
	minAge, maxAge                time.Duration
	missed                        bool // a socket not matched in the cache landed here
}

// partStats are what a finding is written from.
type partStats struct {
	partAcc
	derived
}

// procWork is the analysis of one process's sockets in one snapshot.
type procWork struct {
	p     *ProcessReport
	c     *procCache
	store bool   // c is an Analyzer's: match against it and remember
	gen   uint64 // Analyzer.gen

	// growth: the process's sockets in the baseline
	base      *Baseline
	before    map[sockKey]struct{}
	reuseBase bool // c.inBase answers for base
	entered   int
	matched   int // sockets found unchanged in the cache
	recounted int // parts whose derived results were recounted
	written   int // findings' texts written

	// cursor into c.ents
	cur, missRun int
	pending      []pendingSock // not found near the cursor: see resolve

	// This snapshot's sockets, in the order added: while same, they are
	// the first n of c.ents (no copy), else ents. part holds their parts
	// when nothing is stored.
	same    bool
	ents    []sockEntry
	part    []int32
	inBase  []uint64
	acc     []partAcc
	n       int
	inbound int // sockets added that are inbound
	// last group looked up
	lastKey   groupKey
	lastGroup int32
	haveLast  bool

	usedGroups int // groups with sockets in this snapshot

	// growth finding: direction and oldest age of the process's sockets
	growthDir    string
	growthOldest float64
}

// newWork starts the analysis of a process's sockets. a nil Analyzer (or a
// nil base) remembers nothing (or computes no growth).
func (a *Analyzer) newWork(p *ProcessReport, base *Baseline) *procWork {
	w := &procWork{p: p, base: base}
	if base != nil {
		w.before = base.byPID[p.PID]
	}
	if a == nil {
		w.c = newProcCache()
		return w
	}
	id := procIDOf(p)
	c := a.procs[id]
	if c == nil {
		c = newProcCache()
		a.procs[id] = c
	}
	w.c, w.store, w.gen = c, true, a.gen
	w.reuseBase = base != nil && c.base == base
	w.same = true
	w.inBase = c.spareInBase[:0]
	w.acc = append(c.acc[:0], make([]partAcc, len(c.groups)*numCauses)...)
	c.matched = append(c.matched[:0], make([]uint64, (len(c.ents)+63)/64)...)
	return w
}

// newProcCache returns an empty cache.
func newProcCache() *procCache {
	c := &procCache{groupOf: map[groupKey]int32{}}
	for d := range c.merged {
		c.merged[d] = make([]mergedCache, numCauses)
	}
	return c
}

// socketsHint is how many sockets the process held last time.
func (w *procWork) socketsHint() int { return len(w.c.ents) }

// matchWindow is how far ahead of the cursor a socket is looked for, and
// how many sockets in a row may miss before a map of the keys is built.
const matchWindow = 32

// notNear is match's answer for a socket not found near the cursor: it
// waits in procWork.pending for the end of the pass.
const notNear = -2

// match finds the socket of entry e in the cached sequence near the cursor
// (sockets come in the kernel's hash-table order, which changes little
// between snapshots), or through a map of all the keys once the cursor got
// lost (matchWindow misses in a row). It returns its position when its
// facts are unchanged and it was not matched already, notNear when it is
// not near the cursor (resolve looks for it among the sockets left
// unmatched), else -1.
func (w *procWork) match(e *sockEntry) int {
	c := w.c
	if len(c.ents) == 0 {
		return -1
	}
	i := -1
	for j, end := w.cur, min(w.cur+matchWindow, len(c.ents)); j < end; j++ {
		if c.ents[j].key == e.key {
			i = j
			break
		}
	}
	if i < 0 {
		if c.pos == nil {
			if w.missRun++; w.missRun < matchWindow {
				return notNear
			}
			c.pos = make(map[sockKey]int32, len(c.ents))
			for j := range c.ents {
				c.pos[c.ents[j].key] = int32(j)
			}
		}
		j, ok := c.pos[e.key]
		if !ok {
			return -1
		}
		i = int(j)
	}
	w.cur, w.missRun = i+1, 0
	return w.take(i, e)
}

// take returns i if the cached socket at i is e's with the same facts and
// was not matched yet, and marks it matched; else -1.
func (w *procWork) take(i int, e *sockEntry) int {
	c := w.c
	if !c.ents[i].same(e) || c.matched[i/64]&(1<<(i%64)) != 0 {
		return -1
	}
	c.matched[i/64] |= 1 << (i % 64)
	return i
}

// resolve places the sockets match left pending: it looks them up among
// the cached sockets not matched yet (few, when little changed).
func (w *procWork) resolve() {
	if len(w.pending) == 0 {
		return
	}
	c := w.c
	pos := c.pos
	if pos == nil {
		pos = make(map[sockKey]int32)
		for word, bits := range c.matched {
			for b := 0; bits != ^uint64(0) && b < 64; b++ {
				if j := word*64 + b; bits&(1<<b) == 0 && j < len(c.ents) {
					pos[c.ents[j].key] = int32(j)
				}
			}
		}
	}
	for _, ps := range w.pending {
		at := -1
		e := &w.ents[ps.i]
		if j, ok := pos[e.key]; ok {
			at = w.take(int(j), e)
		}
		w.place(ps.i, ps.s, e.key, at, ps.age, ps.hasAge)
	}
	w.pending = w.pending[:0]
}

// pendingSock is a socket added whose place waits for resolve.
type pendingSock struct {
	i      int
	s      *snapshot.Socket
	age    time.Duration
	hasAge bool
}

// groupOf returns the number of the group of a socket, adding the group
// when it is new.
func (w *procWork) groupOf(s *snapshot.Socket) int32 {
	k := groupKey{inbound: s.Inbound()}
	if k.inbound {
		k.port = s.Listener().Port()
	} else {
		k.remote = s.Remote
	}
	if w.haveLast && k == w.lastKey {
		return w.lastGroup
	}
	c := w.c
	g, ok := c.groupOf[k]
	if !ok {
		g = int32(len(c.groups))
		c.groups = append(c.groups, k)
		c.groupOf[k] = g
		w.acc = append(w.acc, make([]partAcc, numCauses)...)
	}
	w.lastKey, w.lastGroup, w.haveLast = k, g, true
	return g
}

// add takes one CLOSE_WAIT socket of the process, with its age.
func (w *procWork) add(s *snapshot.Socket, age time.Duration, hasAge bool) {
	i := w.n
	w.n++
	if s.Inbound() {
		w.inbound++
	}
	var k sockKey
	if w.store || w.base != nil {
		k = keyOf(s)
	}
	if w.base != nil && w.store && i%64 == 0 {
		w.inBase = append(w.inBase, 0)
	}
	if !w.store {
		if len(w.part) == cap(w.part) {
			w.part = slices.Grow(w.part, len(w.part)+16)
		}
		w.part = append(w.part, 0)
		w.place(i, s, k, -1, age, hasAge)
		return
	}
	c := w.c
	flags, lport, idle, cause := factsOf(s)
	if w.same {
		if i < len(c.ents) && c.ents[i].is(s, k, flags, lport, idle, cause) {
			// The cached socket in the same place (the usual case): nothing
			// to copy, and no bit to mark, while all are.
			w.cur = i + 1
			w.place(i, s, k, i, age, hasAge)
			return
		}
		w.diverge(i)
	}
	if len(w.ents) == cap(w.ents) { // double: append grows large slices by 1.25
		w.ents = slices.Grow(w.ents, len(w.ents)+16)
	}
	w.ents = append(w.ents, sockEntry{key: k, remote: s.Remote, idle: idle, lport: lport, flags: flags, cause: cause})
	pos := w.match(&w.ents[i])
	if pos == notNear {
		w.pending = append(w.pending, pendingSock{i, s, age, hasAge})
		return
	}
	w.place(i, s, k, pos, age, hasAge)
}

// diverge ends the prefix of sockets that are the cached ones in the same
// places: the new sequence starts as a copy of it, and its cached sockets
// are marked matched.
func (w *procWork) diverge(i int) {
	c := w.c
	w.same = false
	w.ents = append(slices.Grow(c.spareEnts[:0], len(c.ents)+len(c.ents)/16+16), c.ents[:i]...)
	for j := range i / 64 {
		c.matched[j] = ^uint64(0)
	}
	if i%64 != 0 {
		c.matched[i/64] |= 1<<(i%64) - 1
	}
}

// place counts socket i of the process in its part: the cached socket's at
// pos, or (pos -1) the one its facts give.
func (w *procWork) place(i int, s *snapshot.Socket, k sockKey, pos int, age time.Duration, hasAge bool) {
	var part int32
	if pos >= 0 {
		w.matched++
		part = w.c.ents[pos].part
	} else {
		var ci int
		if w.store && !w.same { // factsOf named it already
			ci = int(w.ents[i].cause)
		} else {
			ci = causeOf(s)
		}
		part = w.groupOf(s)*int32(numCauses) + int32(ci)
		w.acc[part].missed = true
	}
	switch {
	case !w.store:
		w.part[i] = part
	case !w.same:
		w.ents[i].part = part
	}
	if w.base != nil {
		var in bool
		if pos >= 0 && w.reuseBase {
			in = w.c.inBase[pos/64]&(1<<(pos%64)) != 0
		} else {
			_, in = w.before[k]
		}
		if !in {
			w.entered++
		}
		if in && w.store {
			w.inBase[i/64] |= 1 << (i % 64)
		}
	}

	a := &w.acc[part]
	a.n++
	if s.KeepaliveSet() {
		a.keepalive++
	}
	a.maxQ = max(a.maxQ, s.RecvQ)
	if s.RecvQ > 1 {
		if a.withData == 0 || s.RecvQ < a.minQ {
			a.minQ = s.RecvQ
		}
		a.withData++
		if int(part)%numCauses == causePoolIdle {
			a.goodbye++
		}
	}
	if hasAge {
		if a.nAges == 0 || age < a.minAge {
			a.minAge = age
		}
		a.maxAge = max(a.maxAge, age)
		a.nAges++
	}
}

// clean reports whether part rp holds the very sockets (by facts) it held
// last time: none of its sockets missed the cache, and as many as before
// matched (each cached socket matches once).
func (w *procWork) clean(rp int) bool {
	return w.store && rp < len(w.c.parts) && !w.acc[rp].missed && w.acc[rp].n == w.c.parts[rp].n
}

// finalGroup is a group that gets findings: one group, or the merged rest
// of a direction.
type finalGroup struct {
	key     groupKey
	members []int32
	size    int
}

// finalPart is one finding to write: the sockets of a final group with one cause.
type finalPart struct {
	group   int // index into the final groups
	cause   int
	st      partStats
	needed  bool // derived results are needed
	recount bool // and they are counted from the sockets
}

// findings explains the process's sockets added (socks, in the order
// added): see [Findings]. ports are those it listens on, or nil to find
// them in snap.
func (w *procWork) findings(snap *snapshot.Snapshot, socks []*snapshot.Socket, ports []uint16) []Finding {
	c := w.c
	ng := len(c.groups)
	size := make([]int, ng)
	var dirs [2][]int32
	for g := range ng {
		for ci := range numCauses {
			size[g] += w.acc[g*numCauses+ci].n
		}
		if size[g] > 0 {
			d := dirIndex(c.groups[g].inbound)
			dirs[d] = append(dirs[d], int32(g))
		}
	}
	w.usedGroups = len(dirs[0]) + len(dirs[1])
	var fgs []finalGroup
	for d, gs := range dirs {
		var rest []int32
		if len(gs) > MaxGroups {
			slices.SortFunc(gs, func(a, b int32) int {
				ka, kb := &c.groups[a], &c.groups[b]
				return cmp.Or(cmp.Compare(size[b], size[a]), cmp.Compare(ka.port, kb.port), ka.remote.Compare(kb.remote))
			})
			gs, rest = gs[:MaxGroups-1], gs[MaxGroups-1:]
		}
		for i, g := range gs {
			fgs = append(fgs, finalGroup{key: c.groups[g], members: gs[i : i+1 : i+1], size: size[g]})
		}
		if rest != nil {
			slices.Sort(rest)
			fg := finalGroup{key: groupKey{inbound: d == 0, others: len(rest)}, members: rest}
			for _, g := range rest {
				fg.size += size[g]
			}
			fgs = append(fgs, fg)
		}
	}

	// The parts, with the derived results reused where their sockets are unchanged.
	var parts []finalPart
	var target []int32 // per part of a group: the final part it is recounted for, +1
	for gi := range fgs {
		fg := &fgs[gi]
		for ci := range numCauses {
			fp := finalPart{group: gi, cause: ci}
			a := &fp.st.partAcc
			for _, g := range fg.members {
				b := &w.acc[int(g)*numCauses+ci]
				if b.n == 0 {
					continue
				}
				if b.nAges > 0 {
					if a.nAges == 0 || b.minAge < a.minAge {
						a.minAge = b.minAge
					}
					a.maxAge = max(a.maxAge, b.maxAge)
				}
				if b.withData > 0 && (a.withData == 0 || b.minQ < a.minQ) {
					a.minQ = b.minQ
				}
				a.n += b.n
				a.keepalive += b.keepalive
				a.withData += b.withData
				a.goodbye += b.goodbye
				a.nAges += b.nAges
				a.maxQ = max(a.maxQ, b.maxQ)
			}
			if a.n == 0 {
				continue
			}
			fp.needed = (fg.key.inbound && ci != causeNotAccepted) || ci == causePoolIdle
			if fp.needed {
				reused := false
				if fg.key.others == 0 {
					rp := int(fg.members[0])*numCauses + ci
					if w.clean(rp) && c.parts[rp].valid {
						fp.st.derived, reused = c.parts[rp].d, true
					}
				} else if m := &c.merged[dirIndex(fg.key.inbound)][ci]; w.store && m.valid && slices.Equal(m.members, fg.members) {
					reused = true
					for _, g := range fg.members {
						reused = reused && w.clean(int(g)*numCauses+ci)
					}
					if reused {
						fp.st.derived = m.d
					}
				}
				if !reused {
					fp.recount = true
					w.recounted++
					if target == nil {
						target = make([]int32, len(w.acc))
					}
					for _, g := range fg.members {
						target[int(g)*numCauses+ci] = int32(len(parts)) + 1
					}
				}
			}
			parts = append(parts, fp)
		}
	}
	if target != nil {
		w.recount(parts, target, socks)
	}
	if w.store {
		w.remember(fgs, parts)
	}

	ctx := newAdviceContext(w.p, snap, ports)
	type ranked struct {
		f     Finding
		cause int // the cause before normal-half-close: orders two normal parts of one group
	}
	out := make([]ranked, 0, len(parts)+1)
	growing := w.p.Growth.Growing()
	for i := range parts {
		fp := &parts[i]
		fg := &fgs[fp.group]
		var lines []string
		if fp.cause == causeNotAccepted {
			lines = ctx.listenerLines(fg.key.port)
		}
		var t *findingText
		if w.store {
			key := ctx.textKey(fg.key, fp.cause, &fp.st, fg.size, lines)
			if e := c.texts[key]; e != nil {
				t, e.gen = e.t, w.gen
			} else {
				t = ctx.text(fg.key, fp.cause, &fp.st, fg.size, lines)
				w.written++
				if c.texts == nil {
					c.texts = map[textKey]*textEntry{}
				}
				c.texts[key] = &textEntry{t, w.gen}
			}
		} else {
			t = ctx.text(fg.key, fp.cause, &fp.st, fg.size, lines)
		}
		out = append(out, ranked{t.finding(&fp.st, growing, snap), fp.cause})
	}
	if w.store {
		for k, e := range c.texts {
			if e.gen != w.gen {
				delete(c.texts, k)
			}
		}
	}
	if f, ok := growthFinding(w.p, w.growthDir, w.growthOldest); ok {
		f.Check = ctx.checkAll()
		f.NextSteps = slices.Clone(ctx.stackSteps())
		f.Fix = growingCause.fix(&adviceQuery{runtime: w.p.Runtime, inbound: w.growthDir == "inbound", fill: ctx.fill, p: w.p})
		out = append(out, ranked{f, -1})
	}
	slices.SortFunc(out, func(a, b ranked) int {
		return cmp.Or(
			cmp.Compare(rank(a.f.Cause), rank(b.f.Cause)),
			cmp.Compare(b.f.Count, a.f.Count),
			cmp.Compare(a.f.Cause, b.f.Cause),
			cmp.Compare(a.f.LocalPort, b.f.LocalPort),
			cmp.Compare(a.f.Remote, b.f.Remote),
			cmp.Compare(a.f.Direction, b.f.Direction),
			cmp.Compare(a.cause, b.cause),
		)
	})
	if len(out) == 0 {
		return nil
	}
	fs := make([]Finding, len(out))
	for i := range out {
		fs[i] = out[i].f
	}
	return fs
}

func dirIndex(inbound bool) int {
	if inbound {
		return 0
	}
	return 1
}

// recount works out the derived results of the parts target points at, from
// their sockets.
func (w *procWork) recount(parts []finalPart, target []int32, socks []*snapshot.Socket) {
	type counting struct {
		peers map[netip.Addr]struct{}
		first netip.Addr
		n     int
		idle  []uint32
	}
	cs := make([]counting, len(parts))
	for i := range parts {
		if parts[i].recount && parts[i].cause == causePoolIdle {
			cs[i].idle = make([]uint32, 0, parts[i].st.n)
		}
	}
	count := func(ct *counting, a netip.Addr) {
		switch {
		case ct.n == 0:
			ct.first, ct.n = a, 1
		case ct.peers == nil && a == ct.first:
		case ct.peers == nil:
			ct.peers = map[netip.Addr]struct{}{ct.first: {}, a: {}}
		default:
			ct.peers[a] = struct{}{}
		}
	}
	if w.store {
		// From the entries, which hold what is needed, in a row.
		ents := w.ents
		if w.same {
			ents = w.c.ents[:w.n]
		}
		for i := range ents {
			e := &ents[i]
			t := target[e.part]
			if t == 0 {
				continue
			}
			ct := &cs[t-1]
			if parts[t-1].cause != causePoolIdle {
				count(ct, e.remote.Addr())
			} else if e.flags&factIdle != 0 {
				ct.idle = append(ct.idle, e.idle)
			}
		}
	} else {
		for i, rp := range w.part {
			t := target[rp]
			if t == 0 {
				continue
			}
			s, ct := socks[i], &cs[t-1]
			if parts[t-1].cause != causePoolIdle {
				count(ct, s.Remote.Addr())
			} else if ms, ok := socketCauses[causePoolIdle].idle(s); ok {
				ct.idle = append(ct.idle, ms)
			}
		}
	}
	for i := range parts {
		fp := &parts[i]
		if !fp.recount {
			continue
		}
		ct, d := &cs[i], &fp.st.derived
		if fp.cause == causePoolIdle {
			d.idleMed, d.idleMin, d.idleN = idleStats(ct.idle)
			continue
		}
		d.peers, d.peer = ct.n, ct.first
		if ct.peers != nil {
			d.peers = len(ct.peers)
		}
	}
}

// idleStats are the median and the minimum of idle times in ms, in seconds,
// and how many there are (see idleTimeout). It sorts v.
func idleStats(v []uint32) (median, minimum float64, n int) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	sec := func(ms uint32) float64 { return float64(ms) / 1000 }
	median = sec(v[len(v)/2])
	if len(v)%2 == 0 {
		median = (sec(v[len(v)/2-1]) + sec(v[len(v)/2])) / 2
	}
	return median, sec(v[0]), len(v)
}

// remember keeps this call's sockets and derived results in the cache for
// the next call. A derived result stays valid while its part's sockets are
// unchanged; the merged groups' results are those of this call only.
func (w *procWork) remember(fgs []finalGroup, parts []finalPart) {
	c := w.c
	for rp := range w.acc {
		clean := w.clean(rp)
		if rp < len(c.parts) {
			c.parts[rp].valid = c.parts[rp].valid && clean
			c.parts[rp].n = w.acc[rp].n
		} else {
			c.parts = append(c.parts, partCache{n: w.acc[rp].n})
		}
	}
	for d := range c.merged {
		for ci := range c.merged[d] {
			c.merged[d][ci].valid = false
		}
	}
	for i := range parts {
		fp := &parts[i]
		if !fp.needed {
			continue
		}
		fg := &fgs[fp.group]
		if fg.key.others == 0 {
			rp := int(fg.members[0])*numCauses + fp.cause
			c.parts[rp].valid, c.parts[rp].d = true, fp.st.derived
			continue
		}
		m := &c.merged[dirIndex(fg.key.inbound)][fp.cause]
		m.valid, m.members, m.d = true, append(m.members[:0], fg.members...), fp.st.derived
	}
	if w.same {
		c.ents = c.ents[:w.n]
	} else {
		c.spareEnts, c.ents = c.ents, w.ents
	}
	c.spareInBase, c.inBase = c.inBase, w.inBase
	c.base = w.base
	c.acc = w.acc
	c.pos = nil
	if !c.stale(w.usedGroups) {
		c.gen = w.gen
	}
}

// stale reports whether the cache holds many more groups than the process
// uses (remotes come and go): it is then dropped and built anew.
func (c *procCache) stale(used int) bool { return len(c.groups) > 2*used+64 }
