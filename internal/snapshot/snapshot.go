// Package snapshot joins the kernel's view of TCP sockets with the processes
// that hold them, at one moment. A Snapshot is the only input of everything
// downstream: diagnosis, reports, metrics, history.
package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Socket is a kernel socket with the processes holding it.
type Socket struct {
	sockdiag.Socket
	// Owners holds every (pid, fd) holding the socket; a socket shared after
	// fork has several. For a socket waiting in an accept queue, the owners
	// of the listener, with FD -1.
	Owners []procscan.Owner
	// NotAccepted marks a socket that waits in a listener's accept queue: the
	// peer closed before the server called accept(), so it has no fd.
	NotAccepted bool
	// listener says which listening socket's port this socket's local port
	// is (Listener): one byte where the address took 32, 14% of a socket,
	// and at 1M sockets two snapshots are alive during a scan.
	listener listenerKind
}

// listenerKind is how a socket's listener's address follows from its own
// local address: the same port, and the same address or the unspecified
// address of a family.
type listenerKind uint8

const (
	noListener   listenerKind = iota
	listenerSelf              // bound to the socket's own local address
	listenerAny4              // 0.0.0.0
	listenerAny6              // [::], also for IPv4 peers of a dual-stack listener
)

// Listener returns the local address of the listening socket whose port
// this socket's local port is (an inbound connection), or the zero value.
func (s *Socket) Listener() netip.AddrPort {
	switch s.listener {
	case listenerSelf:
		return s.Local
	case listenerAny4:
		return netip.AddrPortFrom(netip.IPv4Unspecified(), s.Local.Port())
	case listenerAny6:
		return netip.AddrPortFrom(netip.IPv6Unspecified(), s.Local.Port())
	}
	return netip.AddrPort{}
}

// SetListener records l as the listening socket this one came from (the
// zero value: none). A listener of the socket's port is bound to the
// socket's own local address or to an unspecified address; any other l is
// not one: SetListener leaves the socket as it was and returns false.
func (s *Socket) SetListener(l netip.AddrPort) bool {
	switch {
	case !l.IsValid():
		s.listener = noListener
	case l == s.Local:
		s.listener = listenerSelf
	case l.Port() != s.Local.Port():
		return false
	case l.Addr() == netip.IPv4Unspecified():
		s.listener = listenerAny4
	case l.Addr() == netip.IPv6Unspecified():
		s.listener = listenerAny6
	default:
		return false
	}
	return true
}

// Inbound reports whether the socket was accepted from (or waits in) one of
// the host's listening sockets, rather than dialled out.
func (s *Socket) Inbound() bool { return s.listener != noListener }

// Stats describes how a snapshot was taken.
type Stats struct {
	Source   string              // "netlink" or "procnet" (the /proc/net/tcp fallback)
	Owners   string              // how owners were found: "proc" or "ebpf", "+reused" when some came from the previous snapshot, or "none"
	Duration time.Duration       // time to take the snapshot
	DumpTime time.Duration       // time spent in the kernel dump
	ScanTime time.Duration       // time spent finding owners
	Scan     procscan.ScanResult // without Owners: they are on the sockets
	Reused   int                 // owners reused from the previous snapshot without a scan
	// Changes says how the change feed (Options.Changes) was used:
	// ChangesApplied, ChangesFull, or "" without a feed.
	Changes string
	// ChangeEvents is how many changes the feed gave this snapshot.
	ChangeEvents int
}

// Snapshot is one moment of the host's TCP sockets.
type Snapshot struct {
	Time time.Time
	Host string
	// NetNS is the inode of closewait's own network namespace.
	NetNS uint64
	// Namespaces are the network namespaces whose sockets were read, the
	// current one first (by default every namespace of the host: each
	// Socket's NetNS says which one it is in).
	Namespaces []netns.Namespace
	// States counts every TCP socket by state, IPv4 and IPv6 together.
	States map[sockdiag.State]int
	// Detail is the set of states whose sockets are in Sockets.
	Detail sockdiag.StateSet
	// Sockets are the sockets in the Detail states, with owners.
	Sockets []Socket
	// Listeners are the listening sockets whose ports some socket in Sockets
	// uses, with owners.
	Listeners []Socket
	// Processes holds the facts of every owner, by pid. An owner that exited
	// before its facts were read is missing here.
	Processes map[int]*procscan.Process
	// Notices are one-line messages for the user about what could not be seen.
	Notices []string
	// Partial is true when some owners could not be searched for lack of privilege.
	Partial bool
	Stats   Stats

	// changesSynced: Options.Changes was drained right before this snapshot
	// read the kernel, as its changeSeq-th drain.
	changesSynced bool
	changeSeq     uint64
	// carried are the ranges of Sockets that a snapshot built from the
	// change feed (Stats.Changes ChangesApplied) took over from Previous,
	// with Previous's owners; its other sockets are new since Previous.
	carried [][2]int
	delta   delta
	// hugePages: Sockets' memory was advised for transparent huge pages.
	hugePages bool
	// nsRuns are the runs of Sockets, one per network namespace listed
	// from netlink, in order: the next snapshot built from the change feed
	// takes them instead of reading every socket's namespace.
	nsRuns []nsRun
}

// nsRun is the run of Sockets listed from one network namespace.
type nsRun struct {
	netns      uint64
	start, end int
}

// noteRun records that the sockets from start on were listed from netns.
func (snap *Snapshot) noteRun(netns uint64, start int) {
	if end := len(snap.Sockets); end > start {
		snap.nsRuns = append(snap.nsRuns, nsRun{netns, start, end})
	}
}

// Options control Take. The zero value takes a CLOSE_WAIT snapshot of /proc.
type Options struct {
	// ProcRoot is the procfs mount point; empty means /proc.
	ProcRoot string
	// ShowSecrets keeps process command lines as they are; by default
	// secret-looking arguments are redacted (package redact).
	ShowSecrets bool
	// States are the states to list socket by socket; zero means CLOSE_WAIT.
	States sockdiag.StateSet
	// NoOwners skips the owner scan.
	NoOwners bool
	// CompleteScan reads every process's fd table, also after all owners are
	// found (finds sockets passed to unrelated processes; slower).
	CompleteScan bool
	// Workers is the owner scan's parallelism; zero means GOMAXPROCS.
	Workers int
	// ForceProcNet reads /proc/net/tcp{,6} instead of netlink.
	ForceProcNet bool
	// Now overrides the clock (tests).
	Now func() time.Time
	// CurrentNetNSOnly reads only closewait's own network namespace. By
	// default every network namespace found through /proc/*/ns/net and
	// /run/netns is read (entering them needs CAP_SYS_ADMIN), so sockets of
	// containers are seen too; States then sums all of them.
	CurrentNetNSOnly bool
	// NetNS, when not nil, reads only the namespaces with these inodes.
	NetNS map[uint64]bool
	// OwnerSource, when set, finds owners in one pass (the eBPF task_file
	// iterator) instead of the /proc walk; on error the walk is used and
	// Stats.Scan.Fallback says why.
	OwnerSource procscan.SocketFDSource
	// ListedOnly leaves the states that are not listed uncounted: States
	// then holds only Detail and LISTEN, and the kernel walks its tables
	// once, for the listing (sockets, which prints no summary).
	ListedOnly bool
}

// Successive are the settings of a snapshot taken right after another by a
// periodic caller (history.Sampler, for watch and the agent): what it may
// take over from the previous snapshot instead of reading it again. Options
// hold the settings of every snapshot, one-shot or not.
type Successive struct {
	// Previous, when set, is the last snapshot: owners it found are reused
	// after a cheap check (one readlink each) instead of a scan.
	Previous *Snapshot
	// ReuseByProcess, with Previous, keeps a previous owner while its process
	// lives (one check per process) instead of re-reading the fd link of each
	// socket (one readlink per socket). A socket still listed whose owner
	// lives is, short of fd passing, still held by it; periodic callers (the
	// agent) take a snapshot without it now and then to catch the rest.
	ReuseByProcess bool
	// SkipUnowned, with Previous, does not search again for the owners of
	// sockets the previous snapshot could not attribute either.
	SkipUnowned bool
	// CarryInfo, with Previous, dumps the listed sockets without tcp_info:
	// a socket found in Previous keeps its tcp_info with the "ms since"
	// fields advanced by the time between the snapshots, and a new one gets
	// it by an exact lookup. At 100k sockets the kernel's tcp_info copy is
	// about 60% of the dump; periodic callers take a snapshot without it now
	// and then (an acknowledged keepalive probe resets the real value).
	CarryInfo bool
	// Changes, when set, is a feed of sockets entering and leaving
	// CLOSE_WAIT (sockevents.Feed), drained by every Take. With CarryInfo and
	// a Previous taken right before on the same feed, a CLOSE_WAIT snapshot
	// does not dump its CLOSE_WAIT sockets: they are Previous's, less those
	// that left, plus those that entered (one exact lookup each), so the
	// kernel walks only the other states. Queues, timers and owners of the
	// carried sockets are then as of the last full dump; periodic callers
	// take a snapshot without CarryInfo now and then. A feed that lost
	// changes gives a full dump.
	Changes Changes
}

// config is what Take works with: the one-shot settings and, for a
// successive snapshot, what it may carry over.
type config struct {
	Options
	Successive
}

// Take reads the kernel's sockets and their owners.
func Take(opt Options) (*Snapshot, error) { return TakeAfter(opt, Successive{}) }

// TakeAfter takes a snapshot after an earlier one (succ.Previous), reusing
// what succ allows.
func TakeAfter(o Options, succ Successive) (*Snapshot, error) {
	opt := config{o, succ}
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	start := time.Now()
	detail := opt.States
	if detail == 0 {
		detail = sockdiag.NewStateSet(sockdiag.CloseWait)
	}
	snap := &Snapshot{
		Time:      now(),
		States:    make(map[sockdiag.State]int),
		Detail:    detail,
		Processes: make(map[int]*procscan.Process),
	}
	fs := procscan.NewFS(opt.ProcRoot).ShowingSecrets(opt.ShowSecrets)
	changes := snap.drainChanges(opt)
	switch prev := opt.Previous; {
	case changes != nil && changes.apply:
		// The previous snapshot's sockets less those that left plus those
		// that entered: reserve exactly the upper bound. (Two snapshots are
		// alive while this one is taken: slack here is paid twice.)
		n := len(prev.Sockets) + 16
		for _, m := range changes.entered {
			n += len(m)
		}
		snap.Sockets = make([]Socket, 0, n)
	case prev != nil: // about as many sockets as last time: no regrowth of a large slice
		snap.Sockets = make([]Socket, 0, len(prev.Sockets)+len(prev.Sockets)/8+16)
	}
	if prev := opt.Previous; prev != nil && prev.hugePages {
		// Previous is dropped after this snapshot: its memory goes back to
		// the heap for small objects, where a huge page would be faulted
		// in (and cleared) whole for each one touched after a release.
		unadviseHugePages(prev.Sockets)
		prev.hugePages = false
	}
	snap.Host, _ = os.Hostname()

	if l, ok := opt.OwnerSource.(procscan.SocketFDLister); ok && !opt.NoOwners && opt.Previous == nil {
		// One-shot: find owners while the kernel dumps sockets, on another core.
		opt.OwnerSource = procscan.Prefetch(l)
	}
	var listeners []Socket
	prev := newPrevIndex(opt.Previous)
	if err := snap.dump(fs, opt, &listeners, prev, changes); err != nil {
		return nil, err
	}
	if changes != nil && changes.apply {
		snap.endDelta(changes, opt.Previous)
	}
	snap.Stats.DumpTime = time.Since(start)
	snap.linkListeners(listeners)

	if opt.NoOwners {
		snap.Stats.Owners = "none"
	} else if err := snap.findOwners(fs, opt, prev); err != nil {
		return nil, err
	}
	snap.Stats.Duration = time.Since(start)
	return snap, nil
}

// dump fills States, Sockets and the candidate listeners, from netlink or
// from /proc/net when netlink is unavailable.
func (snap *Snapshot) dump(fs procscan.FS, opt config, listeners *[]Socket, prev *prevIndex, changes *changeSet) error {
	detail := snap.Detail
	keep := func(s *sockdiag.Socket) bool {
		snap.States[s.State]++
		if detail.Has(s.State) {
			snap.Sockets = append(snap.Sockets, Socket{Socket: *s})
		}
		if s.State == sockdiag.Listen {
			*listeners = append(*listeners, Socket{Socket: *s})
		}
		return true
	}
	count := func(s *sockdiag.Socket) bool { snap.States[s.State]++; return true }
	d := &dumper{snap: snap, opt: opt, count: count, keep: keep, seen: map[uint64]bool{}, prev: prev, changes: changes,
		reserve: opt.Previous == nil}

	if !opt.ForceProcNet {
		c, err := sockdiag.Dial()
		if err == nil {
			defer c.Close()
			snap.NetNS = c.NetNS()
			snap.Stats.Source = "netlink"
			if d.wanted(c.NetNS()) {
				d.reserveFor(fs, 0)
				start := len(snap.Sockets)
				if err := d.conn(c); err != nil {
					return err
				}
				snap.noteRun(c.NetNS(), start)
				snap.Namespaces = append(snap.Namespaces, netns.Namespace{Inode: c.NetNS(), Current: true})
			}
			if !opt.CurrentNetNSOnly {
				d.others(fs, false)
			}
			return nil
		}
		if !errors.Is(err, sockdiag.ErrNotSupported) && !errors.Is(err, os.ErrPermission) {
			return err
		}
		snap.Notices = append(snap.Notices, "netlink sock_diag is unavailable ("+err.Error()+"): read /proc/net/tcp instead, without ages")
	}
	snap.Stats.Source = "procnet"
	snap.NetNS, _ = netns.Current()
	if d.wanted(snap.NetNS) {
		cur := snap.NetNS
		d.seen[cur] = true
		d.reserveFor(fs, 0)
		label := func(s *sockdiag.Socket) bool { s.NetNS = cur; return keep(s) }
		if err := sockdiag.ReadProcNet(fs.Root(), 0, label); err != nil {
			return err
		}
		snap.Namespaces = append(snap.Namespaces, netns.Namespace{Inode: cur, Current: true})
	}
	if !opt.CurrentNetNSOnly {
		d.others(fs, true)
	}
	return nil
}

// reserve makes room for n more sockets in one allocation, when more than
// 1024 are coming and the slice lacks the room: regrowing a slice of 100k
// sockets copies and clears it several times over, while pages never
// touched cost address space, not memory. Huge pages are advised on the
// new memory, and taken back from a slice it replaces.
func (snap *Snapshot) reserve(n int) {
	if n <= 1024 || cap(snap.Sockets)-len(snap.Sockets) >= n {
		return
	}
	if snap.hugePages {
		unadviseHugePages(snap.Sockets)
	}
	snap.Sockets = slices.Grow(snap.Sockets, n+n/16)
	snap.hugePages = adviseHugePages(snap.Sockets)
}

type portKey struct {
	netns uint64
	port  uint16
}

// linkListeners marks the sockets whose local port is a listening port
// (inbound) and keeps the listeners they use.
func (snap *Snapshot) linkListeners(listeners []Socket) {
	// Listeners by (namespace, port); for closewait's own namespace, where
	// most sockets are, a table indexed by port instead of a map lookup per
	// socket.
	byPort := make(map[portKey][]int, len(listeners))
	var own []int32 // port -> group+1 in ownGroups
	var ownGroups [][]int
	for i, l := range listeners {
		k := portKey{l.NetNS, l.Local.Port()}
		byPort[k] = append(byPort[k], i)
	}
	for k, g := range byPort {
		if k.netns == snap.NetNS && snap.NetNS != 0 {
			if own == nil {
				own = make([]int32, 1<<16)
			}
			ownGroups = append(ownGroups, g)
			own[k.port] = int32(len(ownGroups))
		}
	}
	used := make([]bool, len(listeners))
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.State == sockdiag.Listen {
			continue
		}
		var group []int
		if s.NetNS == snap.NetNS && snap.NetNS != 0 {
			if own != nil && own[s.Local.Port()] != 0 {
				group = ownGroups[own[s.Local.Port()]-1]
			}
		} else {
			group = byPort[portKey{s.NetNS, s.Local.Port()}]
		}
		for _, li := range group {
			if s.SetListener(listeners[li].Local) {
				used[li] = true
				if listeners[li].Local == s.Local {
					break // an exact address wins over a wildcard
				}
			}
		}
		if s.Inode == 0 && s.Inbound() && s.State != sockdiag.TimeWait {
			s.NotAccepted = true
		}
	}
	for i, l := range listeners {
		if used[i] {
			snap.Listeners = append(snap.Listeners, l)
		}
	}
}

// maxLikely bounds the processes searched alone for new sockets before a
// pass over every process (procscan.ScanOptions.Likely): each costs an
// iterator setup of some tens of microseconds plus a walk of its fd table.
const maxLikely = 64

// listenerKey names a listening socket: its namespace and local address.
type listenerKey struct {
	netns uint64
	addr  netip.AddrPort
}

// listenerOwners maps the snapshot's listeners to their owners as they
// stand (reused, or found by the owner pass).
func (snap *Snapshot) listenerOwners() map[listenerKey][]procscan.Owner {
	m := make(map[listenerKey][]procscan.Owner, len(snap.Listeners))
	for _, l := range snap.Listeners {
		m[listenerKey{l.NetNS, l.Local}] = l.Owners
	}
	return m
}

// likelyOwners guesses who holds the new sockets, for an owner source that
// can search a few processes alone (much cheaper than every process, on a
// host where a few holders have tens of thousands of fds): for a socket
// accepted from a listener, the listener's owners; for one dialled out, the
// owners of other sockets to the same remote address (a connection pool).
// Listeners and the other sockets must already carry their reused owners.
func (snap *Snapshot) likelyOwners(fresh []*Socket) []int {
	type remoteKey struct {
		netns uint64
		addr  netip.Addr
	}
	seen := map[int]bool{}
	var likely []int
	add := func(os []procscan.Owner) {
		for _, o := range os {
			if !seen[o.PID] && len(likely) < maxLikely {
				seen[o.PID] = true
				likely = append(likely, o.PID)
			}
		}
	}
	lown := snap.listenerOwners()
	remotes := map[remoteKey]bool{}
	var near remoteFilter // most sockets go elsewhere: no map lookup for them
	for _, s := range fresh {
		if s.Inbound() {
			add(lown[listenerKey{s.NetNS, s.Listener()}])
		} else if s.Remote.IsValid() {
			remotes[remoteKey{s.NetNS, s.Remote.Addr()}] = true
			near.add(s.NetNS, s.Remote.Addr())
		}
	}
	if len(remotes) > 0 {
		for i := range snap.Sockets {
			if len(likely) == maxLikely {
				break
			}
			s := &snap.Sockets[i]
			if len(s.Owners) > 0 && !s.Inbound() && near.has(s.NetNS, s.Remote.Addr()) && remotes[remoteKey{s.NetNS, s.Remote.Addr()}] {
				add(s.Owners)
			}
		}
	}
	return likely
}

// remoteFilter is a set of (namespace, address) pairs with false positives,
// one hash bit each in 64 Kibit: a clear bit says the pair is not in it.
type remoteFilter [1 << 10]uint64

func remoteBit(netns uint64, a netip.Addr) uint64 {
	b := a.As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9E3779B97F4A7C15 ^ binary.LittleEndian.Uint64(b[8:]) ^ netns*0xC2B2AE3D27D4EB4F
	return (h * 0x9E3779B97F4A7C15) >> 48
}

func (f *remoteFilter) add(netns uint64, a netip.Addr) {
	b := remoteBit(netns, a)
	f[b/64] |= 1 << (b % 64)
}

func (f *remoteFilter) has(netns uint64, a netip.Addr) bool {
	b := remoteBit(netns, a)
	return f[b/64]&(1<<(b%64)) != 0
}

// compactMin is the number of owner sets found in one pass above which a
// snapshot of a long-running command copies its sockets' owners into one
// array.
const compactMin = 1024

// compactOwners copies every socket's owners into one array, in socket
// order. An owner pass leaves one small allocation per socket, scattered
// over the heap: the snapshots that carry them on read each one with a cache
// miss (about 80 ns, 8 ms per 100k sockets per tick) and the garbage
// collector marks each. Each socket keeps a full-capacity slice, so an
// append never writes into its neighbour's owners.
func (snap *Snapshot) compactOwners() {
	n := 0
	for i := range snap.Sockets {
		n += len(snap.Sockets[i].Owners)
	}
	slab := make([]procscan.Owner, 0, n)
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if len(s.Owners) > 0 {
			at := len(slab)
			slab = append(slab, s.Owners...)
			s.Owners = slab[at:len(slab):len(slab)]
		}
	}
}

// prevSource says what findOwners knows of a socket without an owner yet.
type prevSource uint8

const (
	lookPrev    prevSource = iota // look it up in Previous by inode
	carriedOver                   // carried over from Previous, which found no owner
	isNew                         // not in Previous
)

// findOwners attributes sockets and listeners to processes and reads the
// facts of every owner.
func (snap *Snapshot) findOwners(fs procscan.FS, opt config, prev *prevIndex) error {
	start := time.Now()
	uids := map[uint32]bool{}
	// Reuse the previous snapshot's owners where they still hold the socket:
	// carried with the socket (a snapshot built from the change feed) or
	// found by inode. Options.SkipUnowned: do not search again for sockets
	// the previous snapshot could not attribute either. Owner pids are
	// collected on the way: reading each socket's owners is a cache miss,
	// so it is done once.
	pids := map[int]bool{}
	var recent pidCache // the sockets of a few processes come interleaved, in hash order
	addPIDs := func(owners []procscan.Owner) {
		for _, o := range owners {
			if !recent.has(o.PID) {
				pids[o.PID] = true
				recent.add(o.PID)
			}
		}
	}
	reused := 0
	var fresh []*Socket // the sockets whose owners are searched
	still, never := newReuser(fs, opt)
	// join: most sockets are searched (a first snapshot; a full check,
	// which searches every socket again in one pass), by an owner source
	// that can join them by sorting (procscan.OwnersOf) instead of
	// through maps of the wanted inodes and of the owners found.
	join := (never || opt.Previous == nil) && procscan.CanJoin(opt.OwnerSource) && !opt.NoOwners
	if never || opt.Previous == nil {
		// No lookups in Previous (its index would be built for nothing),
		// and the list sized once.
		fresh = make([]*Socket, 0, len(snap.Sockets)+len(snap.Listeners))
	}
	reuse := func(s *Socket, from prevSource) {
		if s.Inode == 0 {
			return
		}
		if len(s.Owners) > 0 {
			if still(s.Owners[0], s.Inode) {
				addPIDs(s.Owners)
				reused++
				return
			}
			s.Owners = nil
		} else if !never || opt.SkipUnowned {
			switch from {
			case lookPrev:
				if p := prev.find(s.Inode); p != nil {
					if len(p.Owners) > 0 && still(p.Owners[0], s.Inode) {
						s.Owners = p.Owners
						addPIDs(s.Owners)
						reused++
						return
					}
					if len(p.Owners) == 0 && opt.SkipUnowned {
						return
					}
				}
			case carriedOver: // Previous had no owner for it either
				if opt.SkipUnowned {
					return
				}
			}
		}
		uids[s.UID] = true
		fresh = append(fresh, s)
	}
	prev.rewind(0)
	notAccepted := false
	applied := snap.Stats.Changes == ChangesApplied
	var waiting []int // applied: the sockets in an accept queue
	if applied {
		// Built from the change feed: each socket is known to be carried
		// over (with Previous's owners) or new, without a lookup in
		// Previous (at 1M sockets, hundreds of new ones would otherwise
		// build its index of every inode each time).
		next := 0 // the next socket not yet taken
		take := func(i int, from prevSource) {
			s := &snap.Sockets[i]
			reuse(s, from)
			if s.NotAccepted {
				waiting = append(waiting, i)
			}
		}
		for _, run := range snap.carried {
			for i := next; i < run[0]; i++ {
				take(i, isNew)
			}
			for i := run[0]; i < run[1]; i++ {
				take(i, carriedOver)
			}
			next = run[1]
		}
		for i := next; i < len(snap.Sockets); i++ {
			take(i, isNew)
		}
		notAccepted = len(waiting) > 0
	} else {
		for i := range snap.Sockets {
			reuse(&snap.Sockets[i], lookPrev)
			notAccepted = notAccepted || snap.Sockets[i].NotAccepted
		}
	}
	prev.rewind(1)
	for i := range snap.Listeners {
		reuse(&snap.Listeners[i], lookPrev)
	}
	snap.Stats.Reused = reused

	var res *procscan.ScanResult
	if join && len(fresh) > 0 {
		var err error
		res, err = procscan.OwnersOf(opt.OwnerSource, len(fresh),
			func(i int) uint64 { return fresh[i].Inode },
			func(i int, owners []procscan.Owner) { fresh[i].Owners = owners; addPIDs(owners) })
		if err != nil {
			res = nil // the map search below tries the source again, then the /proc walk
		}
	}
	found := func(*Socket) {} // the join set the owners on the sockets (res.Owners is nil)
	if res == nil {
		var likely []int
		if opt.Previous != nil && len(fresh) > 0 {
			likely = snap.likelyOwners(fresh)
		}
		wanted := make(map[uint64]struct{}, len(fresh))
		for _, s := range fresh {
			wanted[s.Inode] = struct{}{}
		}
		var err error
		res, err = fs.FindOwners(wanted, procscan.ScanOptions{Workers: opt.Workers, UIDs: uids, Complete: opt.CompleteScan, Source: opt.OwnerSource, Likely: likely})
		if err != nil {
			return fmt.Errorf("find owners: %w", err)
		}
		for _, os := range res.Owners {
			addPIDs(os)
		}
		owners := res.Owners
		found = func(s *Socket) {
			if o, ok := owners[s.Inode]; ok && s.Inode != 0 {
				s.Owners = o
			}
		}
	}
	snap.Stats.Scan = *res
	snap.Stats.Scan.Owners = nil // on the sockets; kept, the map would outlive the scan (8 MB a 100k sockets)
	snap.Stats.Owners = res.Method
	if reused > 0 {
		snap.Stats.Owners += "+reused"
	}
	if len(res.Owners) > 0 {
		for i := range snap.Listeners {
			found(&snap.Listeners[i])
		}
	}
	switch {
	case applied:
		// The same, for the sockets searched and those waiting only: a
		// snapshot built from the change feed costs nothing per socket
		// carried over.
		if len(res.Owners) > 0 {
			for _, s := range fresh {
				found(s)
			}
		}
		if len(waiting) > 0 {
			lown := snap.listenerOwners()
			for _, i := range waiting {
				s := &snap.Sockets[i]
				for _, o := range lown[listenerKey{s.NetNS, s.Listener()}] {
					s.Owners = append(s.Owners, procscan.Owner{PID: o.PID, FD: -1})
				}
			}
		}
	case len(res.Owners) > 0 || notAccepted:
		// The owners just found; sockets in an accept queue belong to the
		// listener's owners (already in pids).
		lown := snap.listenerOwners()
		for i := range snap.Sockets {
			s := &snap.Sockets[i]
			found(s)
			if s.NotAccepted {
				for _, o := range lown[listenerKey{s.NetNS, s.Listener()}] {
					s.Owners = append(s.Owners, procscan.Owner{PID: o.PID, FD: -1})
				}
			}
		}
	}
	if len(res.Owners) > compactMin && (opt.Previous != nil || opt.Changes != nil) {
		snap.compactOwners() // the join's owners are in socket order already
	}
	snap.Stats.ScanTime = time.Since(start)

	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		p, err := fs.Process(pid)
		if err != nil {
			continue // exited since the scan: its sockets are gone with it
		}
		snap.Processes[pid] = p
	}
	if res.Denied == 0 && opt.SkipUnowned && opt.Previous != nil && opt.Previous.Partial {
		// The sockets nobody could be found holding were not searched
		// again (SkipUnowned): the previous search's denials still hold,
		// and an incremental snapshot must say so as a full one does.
		snap.Stats.Scan.Denied = opt.Previous.Stats.Scan.Denied
	}
	if snap.Stats.Scan.Denied > 0 {
		snap.Partial = true
		unowned := 0
		for _, s := range snap.Sockets {
			if len(s.Owners) == 0 {
				unowned++
			}
		}
		if unowned > 0 {
			snap.Notices = append(snap.Notices, fmt.Sprintf(
				"%d sockets have no owner shown: %d processes' fd tables could not be read (run as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)",
				unowned, snap.Stats.Scan.Denied))
		}
	}
	return nil
}
