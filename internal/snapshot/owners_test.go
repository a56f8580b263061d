package snapshot_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/ebpfowners"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// loadIterator loads the eBPF owner iterator for the test, or skips it
// where it cannot run (not root, no BTF, not the host's pid namespace).
func loadIterator(t *testing.T) *ebpfowners.Iterator {
	t.Helper()
	skipUnlessRoot(t)
	if !ebpfowners.InInitPIDNS() {
		t.Skip("not in the initial pid namespace: the iterator's pids would not match /proc")
	}
	it, err := ebpfowners.Load()
	cwtest.SkipIfNotSupported(t, err, ebpfowners.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { it.Close() })
	return it
}

// TestOwnersEBPFMatchesProc takes the same snapshot with both owner paths
// over CLOSE_WAIT, ESTABLISHED and LISTEN sockets of several processes,
// some shared by two of them, and compares the owners of every socket the
// test's processes hold.
func TestOwnersEBPFMatchesProc(t *testing.T) {
	it := loadIterator(t)
	shared := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2, Share: true})
	plain := cwtest.Start(t, cwtest.Spec{Network: "tcp6", Unread: 3, NotAccepted: 1})
	// Matched by the listening address and port, not the port alone: on a
	// busy host another test's socket can have the same port on another
	// address (a TIME_WAIT seen by one snapshot only).
	ours := map[netip.AddrPort]bool{shared.Listen: true, plain.Listen: true}

	type key struct {
		state    sockdiag.State
		l, r     string
		inode    uint64
		accepted bool
	}
	owners := func(src procscan.SocketFDSource) (map[key][]procscan.Owner, *snapshot.Snapshot) {
		snap, err := snapshot.Take(snapshot.Options{States: sockdiag.AllStates, OwnerSource: src, CurrentNetNSOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		m := map[key][]procscan.Owner{}
		for _, s := range snap.Sockets {
			if ours[s.Local] || ours[s.Remote] {
				m[key{s.State, s.Local.String(), s.Remote.String(), s.Inode, !s.NotAccepted}] = s.Owners
			}
		}
		return m, snap
	}
	viaProc, ps := owners(nil)
	viaEBPF, es := owners(it)
	if ps.Stats.Owners != "proc" || es.Stats.Owners != "ebpf" {
		t.Fatalf("methods %q and %q, want proc and ebpf", ps.Stats.Owners, es.Stats.Owners)
	}
	// The test process's own client ends (FIN_WAIT2) and the holders' listeners
	// and CLOSE_WAIT sockets must all be there, with owners.
	states := map[sockdiag.State]int{}
	sharedByTwo := 0
	for k, o := range viaProc {
		states[k.state]++
		if len(o) == 2 {
			sharedByTwo++
		}
	}
	if states[sockdiag.Listen] != 2 || states[sockdiag.CloseWait] != 8 || states[sockdiag.FinWait2] < 7 || sharedByTwo < 4 {
		t.Fatalf("fixture not as expected: states %v, %d sockets with two owners", states, sharedByTwo)
	}
	// Sockets move between dumps only if something closes them; the sets must match.
	if diff := cmp.Diff(viaProc, viaEBPF); diff != "" {
		t.Errorf("owners (-proc +ebpf):\n%s", diff)
	}
}

// failingSource is an owner source that always fails, as a verifier
// rejection or a lost capability would.
type failingSource struct{}

func (failingSource) EachWanted(map[uint64]struct{}, func(int, int, uint64)) error {
	return errors.New("load: verifier rejected the program")
}

// failingLister also fails its unfiltered pass, which a snapshot that
// searches most sockets joins by sorting (procscan.OwnersOf).
type failingLister struct{ failingSource }

func (failingLister) Each(func(int, int, uint64)) error {
	return errors.New("read iterator: interrupted")
}

func TestOwnersFallBackToProc(t *testing.T) {
	skipUnlessRoot(t)
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	for _, src := range []procscan.SocketFDSource{failingSource{}, failingLister{}} {
		snap, err := snapshot.Take(snapshot.Options{OwnerSource: src, CurrentNetNSOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Stats.Owners != "proc" || snap.Stats.Scan.Fallback == nil {
			t.Errorf("%T: owners %q, fallback %v: want the /proc walk and the reason", src, snap.Stats.Owners, snap.Stats.Scan.Fallback)
		}
		for _, s := range mine(snap, h) {
			if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
				t.Errorf("%T: after fallback, %v owned by %v", src, s.Remote, s.Owners)
			}
		}
	}
}

// TestNewSocketsSearchedInPreviousOwnersFirst: between two incremental
// snapshots a known holder leaks more sockets and a new holder starts. The
// eBPF source searches the previous owners alone first (Stats.Scan.Targeted),
// then every process for the socket they do not hold; both end up with the
// right owner.
func TestNewSocketsSearchedInPreviousOwnersFirst(t *testing.T) {
	it := loadIterator(t)
	known := cwtest.Start(t, cwtest.Spec{Unread: 2, LeakEvery: 50 * time.Millisecond, LeakMax: 5})
	incr := func(prev *snapshot.Snapshot) *snapshot.Snapshot {
		t.Helper()
		// Not SkipUnowned: a socket leaked while the first snapshot ran
		// may have no owner there (the one-shot owner pass runs beside the
		// dump) and must be searched again.
		s, err := snapshot.TakeAfter(snapshot.Options{OwnerSource: it}, snapshot.Successive{Previous: prev, ReuseByProcess: prev != nil, CarryInfo: prev != nil})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := incr(nil)
	known.Next("LEAK")
	time.Sleep(400 * time.Millisecond) // the leaks of the known holder
	fresh := cwtest.Start(t, cwtest.Spec{Unread: 1})
	second := incr(first)
	if second.Stats.Scan.Targeted == 0 {
		if err := it.EachWantedIn([]int{known.PID}, map[uint64]struct{}{1: {}}, func(int, int, uint64) {}); errors.Is(err, ebpfowners.ErrNotSupported) {
			cwtest.SkipOnOldKernel(t, 6, 1, "task_file iterator for chosen pids")
			t.Fatal(err)
		}
		t.Fatalf("new sockets were not searched in the previous owners first: %+v", second.Stats.Scan)
	}
	byPort := func(snap *snapshot.Snapshot, h *cwtest.Holder) (n int, wrong []string) {
		for _, s := range snap.Sockets {
			if s.Local.Port() != h.Listen.Port() || s.Local.Addr() != h.Listen.Addr() {
				continue
			}
			n++
			if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
				wrong = append(wrong, fmt.Sprintf("%v owned by %v", s.Remote, s.Owners))
			}
		}
		return n, wrong
	}
	if n, wrong := byPort(second, known); n < 3 || len(wrong) > 0 {
		t.Errorf("known holder: %d sockets (want its 2 and some leaked), misattributed: %v", n, wrong)
	}
	if n, wrong := byPort(second, fresh); n != 1 || len(wrong) > 0 {
		t.Errorf("new holder: %d sockets (want 1), misattributed: %v", n, wrong)
	}
}

// TestNewOutboundSearchedInPoolOwnersFirst: a new socket dialled out to a
// server that other sockets (a connection pool) already go to is searched
// in their owners first; here it belongs to another process, found by the
// pass over every process, and both keep the right owners.
func TestNewOutboundSearchedInPoolOwnersFirst(t *testing.T) {
	it := loadIterator(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			c.(*net.TCPConn).CloseWrite() // the server's idle timeout: the clients' ends go to CLOSE_WAIT
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	server := netip.MustParseAddrPort(ln.Addr().String())
	pool := cwtest.Start(t, cwtest.Spec{DialTo: server.String(), Dial: 2})
	time.Sleep(300 * time.Millisecond) // the FINs arrive
	take := func(prev *snapshot.Snapshot) *snapshot.Snapshot {
		t.Helper()
		s, err := snapshot.TakeAfter(snapshot.Options{OwnerSource: it}, snapshot.Successive{Previous: prev, ReuseByProcess: prev != nil, CarryInfo: prev != nil})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := take(nil)
	other := cwtest.Start(t, cwtest.Spec{DialTo: server.String(), Dial: 1})
	time.Sleep(300 * time.Millisecond)
	second := take(first)
	owners := map[int]int{} // pid -> sockets to the server
	for _, s := range second.Sockets {
		if s.State != sockdiag.CloseWait || s.Remote != server {
			continue
		}
		if len(s.Owners) != 1 {
			t.Errorf("%v: owners %v, want one", s.Local, s.Owners)
			continue
		}
		owners[s.Owners[0].PID]++
	}
	if owners[pool.PID] != 2 || owners[other.PID] != 1 || len(owners) != 2 {
		t.Errorf("sockets to the server by owner: %v, want %d: 2 and %d: 1", owners, pool.PID, other.PID)
	}
	if second.Stats.Scan.Targeted == 0 {
		if err := it.EachWantedIn([]int{pool.PID}, map[uint64]struct{}{1: {}}, func(int, int, uint64) {}); errors.Is(err, ebpfowners.ErrNotSupported) {
			cwtest.SkipOnOldKernel(t, 6, 1, "task_file iterator for chosen pids")
			t.Fatal(err)
		}
		t.Errorf("the new socket was not searched in the pool's owner first: %+v", second.Stats.Scan)
	}
}

// TestFullCheckJoinsOwners: a verifying snapshot after a large one (4096
// sockets, lowered here to 16), with the eBPF source, searches every owner
// again in one pass joined by sorting (procscan.OwnersOf), without reusing
// any: a holder's
// sockets, those shared with its child after fork (both owners, in pid
// order) and those waiting in its accept queue (the listener's owner) all
// come out as the first snapshot had them.
func TestFullCheckJoinsOwners(t *testing.T) {
	it := loadIterator(t)
	defer snapshot.SetVerifyByPassMin(16)()
	many := cwtest.Start(t, cwtest.Spec{Unread: 40})
	shared := cwtest.Start(t, cwtest.Spec{Unread: 2, Share: true, NotAccepted: 1})
	take := func(prev *snapshot.Snapshot) *snapshot.Snapshot {
		t.Helper()
		s, err := snapshot.TakeAfter(snapshot.Options{OwnerSource: it, CurrentNetNSOnly: true}, snapshot.Successive{Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := take(nil)
	full := take(first)
	if full.Stats.Reused != 0 || full.Stats.Owners != "ebpf" {
		t.Fatalf("full check: %d owners reused, found by %q: want none reused, all found by one eBPF pass", full.Stats.Reused, full.Stats.Owners)
	}
	for _, snap := range []*snapshot.Snapshot{first, full} {
		got := mine(snap, many)
		if len(got) != 40 {
			t.Fatalf("%d of the holder's 40 sockets listed", len(got))
		}
		for _, s := range got {
			if len(s.Owners) != 1 || s.Owners[0].PID != many.PID {
				t.Fatalf("%v owned by %v, want pid %d", s.Remote, s.Owners, many.PID)
			}
		}
		ss := mine(snap, shared)
		accepted, waiting := 0, 0
		for _, s := range ss {
			switch {
			case s.NotAccepted:
				waiting++
				if len(s.Owners) != 1 || s.Owners[0].PID != shared.PID || s.Owners[0].FD != -1 {
					t.Errorf("waiting socket %v owned by %v, want the listener's owner %d with fd -1", s.Remote, s.Owners, shared.PID)
				}
			default:
				accepted++
				want := []int{shared.PID, shared.SharerPID}
				slices.Sort(want)
				if len(s.Owners) != 2 || s.Owners[0].PID != want[0] || s.Owners[1].PID != want[1] {
					t.Errorf("shared socket %v owned by %v, want pids %v in that order", s.Remote, s.Owners, want)
				}
			}
		}
		if accepted != 2 || waiting != 1 {
			t.Errorf("shared holder: %d accepted and %d waiting sockets listed, want 2 and 1", accepted, waiting)
		}
	}
}
