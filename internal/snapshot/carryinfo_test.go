package snapshot

import (
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

// TestTakeCarryInfo checks that a snapshot taken with CarryInfo gives the
// holder's known sockets the ages a full dump gives, and its new sockets
// (leaked since the previous snapshot) tcp_info by lookup.
func TestTakeCarryInfo(t *testing.T) {
	// In a namespace of its own, so that each snapshot reads only the
	// holder's sockets and ends long before the first leak, however many
	// sockets the host holds.
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	only := map[uint64]bool{ino: true}
	h := cwtest.Start(t, cwtest.Spec{NetNS: name, ReadEOF: 2, Unread: 2, LeakEvery: 200 * time.Millisecond, LeakMax: 3})
	ours := func(snap *Snapshot) map[uint64]*sockdiag.Socket {
		out := map[uint64]*sockdiag.Socket{}
		for i := range snap.Sockets {
			s := &snap.Sockets[i]
			if s.State == sockdiag.CloseWait && s.Local.Port() == h.Listen.Port() && s.Inode != 0 {
				out[s.Inode] = &s.Socket
			}
		}
		return out
	}
	prev, err := Take(Options{NetNS: only, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.Next("LEAK")
	}
	time.Sleep(300 * time.Millisecond)
	carried, err := TakeAfter(Options{NetNS: only, NoOwners: true}, Successive{Previous: prev, CarryInfo: true})
	if err != nil {
		t.Fatal(err)
	}
	full, err := Take(Options{NetNS: only, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	before, got, want := ours(prev), ours(carried), ours(full)
	later := full.Time.Sub(carried.Time)
	if len(got) != 7 || len(want) != 7 {
		t.Fatalf("holder sockets: %d carried, %d in a full dump, want 7 (4 + 3 leaked)", len(got), len(want))
	}
	newOnes := 0
	for ino, w := range want {
		g := got[ino]
		if g == nil || !g.HasInfo {
			t.Errorf("socket %d: no tcp_info with CarryInfo", ino)
			continue
		}
		if _, known := before[ino]; !known {
			newOnes++
		}
		// The full dump came later than the carried one; each reads its
		// sockets some time into a dump of the whole host (up to ~1 s under load).
		ga, _ := g.Age()
		wa, _ := w.Age()
		if d := wa - ga - later; d < -time.Second || d > time.Second {
			t.Errorf("socket %d: carried age %v, full dump %v taken %v later", ino, ga, wa, later)
		}
		if g.RecvQ != w.RecvQ || g.Local != w.Local || g.Remote != w.Remote || g.Cookie != w.Cookie || g.NetNS != w.NetNS {
			t.Errorf("socket %d: carried %+v, full %+v", ino, g, w)
		}
	}
	// One dump lists, counts and finds the listeners with CarryInfo too.
	inbound := 0
	for i := range carried.Sockets {
		if s := &carried.Sockets[i]; s.Local.Port() == h.Listen.Port() && s.Listener() == h.Listen {
			inbound++
		}
	}
	if inbound != 7 || carried.States[sockdiag.CloseWait] < 7 || carried.States[sockdiag.Listen] < 1 {
		t.Errorf("carried snapshot: %d inbound holder sockets (want 7), states %v", inbound, carried.States)
	}
	if newOnes == 0 {
		t.Error("no socket was new since the previous snapshot: the lookup path was not tested")
	}
}
