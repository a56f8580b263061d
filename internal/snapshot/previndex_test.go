package snapshot

import (
	"slices"
	"testing"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestPrevIndex(t *testing.T) {
	sock := func(ino uint64) Socket { return Socket{Socket: sockdiag.Socket{Inode: ino}} }
	prev := &Snapshot{Listeners: []Socket{sock(900)}}
	for ino := uint64(1); ino <= 1000; ino++ {
		if ino%100 != 0 { // inodes 100, 200, ... are listeners or absent
			prev.Sockets = append(prev.Sockets, sock(ino))
		}
	}
	x := newPrevIndex(prev)

	// In dump order: every hit is found next to the cursor, with no map.
	for _, s := range prev.Sockets {
		if p := x.find(s.Inode); p == nil || p.Inode != s.Inode {
			t.Fatalf("find(%d) = %v", s.Inode, p)
		}
	}
	if x.byInode != nil {
		t.Error("a lookup in dump order built the map")
	}
	// Sockets that left are skipped within the window; new ones whose bit is
	// clear are answered without the map.
	x.rewind(0)
	for _, ino := range []uint64{1, 2, 5, 9, 14} {
		if p := x.find(ino); p == nil || p.Inode != ino {
			t.Fatalf("after departures, find(%d) = %v", ino, p)
		}
	}
	if p := x.find(0); p != nil {
		t.Error("inode 0 matched")
	}
	misses := 0
	for ino := uint64(5000); ino < 5100; ino++ {
		if x.find(ino) != nil {
			t.Fatalf("new inode %d found", ino)
		}
		if x.byInode == nil {
			misses++
		}
	}
	if misses == 0 {
		t.Error("every new inode built the map: the bitset filters nothing")
	}
	// Out of order: found through the map, and the cursor follows the hit.
	x.rewind(0)
	for _, ino := range []uint64{777, 3, 900, 778} {
		if p := x.find(ino); p == nil || p.Inode != ino {
			t.Fatalf("out of order, find(%d) = %v", ino, p)
		}
	}
	var nilIndex *prevIndex
	nilIndex.rewind(0)
	if nilIndex.find(5) != nil {
		t.Error("nil index found something")
	}
}

func TestCompactOwners(t *testing.T) {
	shared := []procscan.Owner{{PID: 7, FD: 3}, {PID: 8, FD: 3}}
	snap := &Snapshot{Sockets: []Socket{
		{Owners: []procscan.Owner{{PID: 1, FD: 4}}},
		{},
		{Owners: shared},
		{Owners: []procscan.Owner{{PID: 2, FD: 9}}},
	}}
	want := make([][]procscan.Owner, len(snap.Sockets))
	for i, s := range snap.Sockets {
		want[i] = slices.Clone(s.Owners)
	}
	snap.compactOwners()
	for i, s := range snap.Sockets {
		if !slices.Equal(s.Owners, want[i]) {
			t.Errorf("socket %d: owners %v, want %v", i, s.Owners, want[i])
		}
	}
	if &snap.Sockets[0].Owners[0] == &shared[0] || &snap.Sockets[2].Owners[0] == &shared[0] {
		t.Error("owners not copied into one array")
	}
	for i, s := range snap.Sockets {
		if cap(s.Owners) != len(s.Owners) {
			t.Errorf("socket %d: owners of capacity %d for %d", i, cap(s.Owners), len(s.Owners))
		}
	}
	// An append (a not-accepted socket gains the listener's owners) must
	// not write into the next socket's owners.
	snap.Sockets[2].Owners = append(snap.Sockets[2].Owners, procscan.Owner{PID: 99, FD: -1})
	if !slices.Equal(snap.Sockets[3].Owners, want[3]) {
		t.Errorf("append to one socket's owners changed the next one's: %v", snap.Sockets[3].Owners)
	}
}
