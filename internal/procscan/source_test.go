package procscan

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordingSource answers from a fixed table of (pid, fd, inode) and
// records how it was asked: the pass logic of findOwnersFrom, apart from
// any kernel (the eBPF source itself is tested against /proc in
// internal/ebpfowners).
type recordingSource struct {
	table   []fdTriple
	passes  int     // EachWanted calls
	inCalls [][]int // EachWantedIn pid lists
	inErr   error
}

func (r *recordingSource) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	r.passes++
	for _, t := range r.table {
		if _, ok := wanted[t.inode]; ok {
			fn(int(t.pid), int(t.fd), t.inode)
		}
	}
	return nil
}

func (r *recordingSource) EachWantedIn(pids []int, wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	r.inCalls = append(r.inCalls, pids)
	if r.inErr != nil {
		return r.inErr
	}
	for _, t := range r.table {
		for _, p := range pids {
			if _, ok := wanted[t.inode]; ok && int(t.pid) == p {
				fn(p, int(t.fd), t.inode)
			}
		}
	}
	return nil
}

func TestFindOwnersFromSource(t *testing.T) {
	table := []fdTriple{{inode: 10, pid: 100, fd: 3}, {inode: 11, pid: 100, fd: 4}, {inode: 20, pid: 200, fd: 5}, {inode: 10, pid: 300, fd: 7}}
	tests := []struct {
		name       string
		wanted     []uint64
		likely     []int
		complete   bool
		inErr      error
		wantPasses int
		wantIn     int
		targeted   int
		owners     map[uint64][]Owner
	}{
		{name: "nothing wanted: no pass", wanted: nil, likely: []int{100}, owners: map[uint64][]Owner{}},
		{name: "no likely: one pass", wanted: []uint64{10, 20}, wantPasses: 1,
			owners: map[uint64][]Owner{10: {{100, 3}, {300, 7}}, 20: {{200, 5}}}},
		{name: "likely hold all: no full pass", wanted: []uint64{11}, likely: []int{100}, wantIn: 1, targeted: 1,
			owners: map[uint64][]Owner{11: {{100, 4}}}},
		{name: "likely hold some: full pass for the rest", wanted: []uint64{11, 20}, likely: []int{100}, wantIn: 1, wantPasses: 1, targeted: 1,
			owners: map[uint64][]Owner{11: {{100, 4}}, 20: {{200, 5}}}},
		{name: "likely in order until all found", wanted: []uint64{11, 20}, likely: []int{100, 200, 300}, wantIn: 2, targeted: 2,
			owners: map[uint64][]Owner{11: {{100, 4}}, 20: {{200, 5}}}},
		{name: "complete: no targeted pass", wanted: []uint64{10}, likely: []int{100}, complete: true, wantPasses: 1,
			owners: map[uint64][]Owner{10: {{100, 3}, {300, 7}}}},
		{name: "targeted pass fails: full pass", wanted: []uint64{11}, likely: []int{100}, inErr: errors.New("old kernel"), wantIn: 1, wantPasses: 1,
			owners: map[uint64][]Owner{11: {{100, 4}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &recordingSource{table: table, inErr: tt.inErr}
			wanted := map[uint64]struct{}{}
			for _, ino := range tt.wanted {
				wanted[ino] = struct{}{}
			}
			res, err := FS{}.findOwnersFrom(src, wanted, ScanOptions{Likely: tt.likely, Complete: tt.complete})
			if err != nil {
				t.Fatal(err)
			}
			if src.passes != tt.wantPasses || len(src.inCalls) != tt.wantIn || res.Targeted != tt.targeted {
				t.Errorf("passes %d, per-process calls %d, targeted %d; want %d, %d, %d", src.passes, len(src.inCalls), res.Targeted, tt.wantPasses, tt.wantIn, tt.targeted)
			}
			if diff := cmp.Diff(tt.owners, res.Owners); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
		})
	}
}
