package procscan

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// listingSource answers an unfiltered pass from a fixed table, as the eBPF
// iterator's Each does (the iterator itself is tested against /proc in
// internal/ebpfowners, and the join through snapshot.Take with it).
type listingSource struct {
	table []fdTriple
	err   error
}

func (l listingSource) Each(fn func(pid, fd int, inode uint64)) error {
	for _, t := range l.table {
		fn(int(t.pid), int(t.fd), t.inode)
	}
	return l.err
}

func (l listingSource) EachWanted(map[uint64]struct{}, func(pid, fd int, inode uint64)) error {
	return errors.New("not used by OwnersOf")
}

func TestOwnersOf(t *testing.T) {
	// In the iterator's order: by pid, then fd. Inode 10 is shared after
	// fork (pids 100 and 300), and listed twice for pid 100 (a dup'ed fd
	// seen twice by a racing pass is the same owner).
	table := []fdTriple{
		{inode: 10, pid: 100, fd: 3}, {inode: 11, pid: 100, fd: 4}, {inode: 10, pid: 100, fd: 3},
		{inode: 20, pid: 200, fd: 5}, {inode: 99, pid: 200, fd: 6},
		{inode: 10, pid: 300, fd: 7}, {inode: 5, pid: 300, fd: 1},
	}
	tests := []struct {
		name    string
		inodes  []uint64
		want    map[int][]Owner // by index into inodes
		fds     int
		visited int
	}{
		{name: "none searched", inodes: nil, want: map[int][]Owner{}},
		{name: "shared, single and missing", inodes: []uint64{20, 10, 42, 11},
			want: map[int][]Owner{0: {{200, 5}}, 1: {{100, 3}, {300, 7}}, 3: {{100, 4}}}, fds: 4, visited: 3},
		{name: "inode 0 never matches", inodes: []uint64{0, 5},
			want: map[int][]Owner{1: {{300, 1}}}, fds: 1, visited: 1},
		{name: "the same inode listed twice gets its owners twice", inodes: []uint64{10, 10},
			want: map[int][]Owner{0: {{100, 3}, {300, 7}}, 1: {{100, 3}, {300, 7}}}, fds: 4, visited: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, src := range []struct {
				name string
				src  SocketFDSource
			}{{"lister", listingSource{table: table}}, {"prefetched", Prefetch(listingSource{table: table})}} {
				got := map[int][]Owner{}
				res, err := OwnersOf(src.src, len(tc.inodes), func(i int) uint64 { return tc.inodes[i] }, func(i int, os []Owner) {
					if _, dup := got[i]; dup {
						t.Errorf("%s: socket %d set twice", src.name, i)
					}
					if cap(os) != len(os) {
						t.Errorf("%s: socket %d: owners of capacity %d, length %d: an append would write into a neighbour's", src.name, i, cap(os), len(os))
					}
					got[i] = os
				})
				if err != nil {
					t.Fatalf("%s: %v", src.name, err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: owners (-want +got):\n%s", src.name, diff)
				}
				if res.FDs != tc.fds || res.Visited != tc.visited || res.Method != "ebpf" {
					t.Errorf("%s: FDs %d, processes %d, method %q; want %d, %d, ebpf", src.name, res.FDs, res.Visited, res.Method, tc.fds, tc.visited)
				}
			}
		})
	}
}

func TestOwnersOfErrors(t *testing.T) {
	boom := errors.New("iterator: read: EINTR")
	for _, tc := range []struct {
		name string
		src  SocketFDSource
	}{
		{"failing pass", listingSource{err: boom}},
		{"failing prefetched pass", Prefetch(listingSource{err: boom})},
		{"a source without an unfiltered pass", &recordingSource{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OwnersOf(tc.src, 1, func(int) uint64 { return 1 }, func(int, []Owner) { t.Error("set called") }); err == nil {
				t.Error("no error")
			}
		})
	}
	if CanJoin(&recordingSource{}) || !CanJoin(listingSource{}) || !CanJoin(Prefetch(listingSource{})) {
		t.Error("CanJoin: want false for a filtered-only source, true for a lister and a prefetched pass")
	}
}

// TestOwnersOfWideInode: an inode beyond 32 bits (never a socket's) is an
// error, for the caller to fall back to the map search, not a wrong match.
func TestOwnersOfWideInode(t *testing.T) {
	src := listingSource{table: []fdTriple{{inode: 1<<32 | 7, pid: 1, fd: 3}, {inode: 7, pid: 2, fd: 4}}}
	if _, err := OwnersOf(src, 1, func(int) uint64 { return 1<<32 | 7 }, func(int, []Owner) { t.Error("set called") }); err == nil {
		t.Error("no error for a 33-bit inode")
	}
}
