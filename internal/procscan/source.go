package procscan

import (
	"cmp"
	"slices"
)

// SocketFDSource lists, in one pass, the (pid, fd, inode) of every socket fd
// of every process whose inode is wanted: a faster way to find owners than
// reading /proc/PID/fd (e.g. an eBPF task_file iterator). Its pids must be
// those of this procfs.
type SocketFDSource interface {
	EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error
}

// findOwnersFrom asks src for the owners. The pass is complete (every
// process is visited), so sockets shared by unrelated processes are found too.
func (fs FS) findOwnersFrom(src SocketFDSource, wanted map[uint64]struct{}, opt ScanOptions) (*ScanResult, error) {
	res := &ScanResult{Owners: make(map[uint64][]Owner, len(wanted))}
	procs := map[int]bool{}
	err := src.EachWanted(wanted, func(pid, fd int, inode uint64) {
		if opt.OnlyPIDs != nil && !opt.OnlyPIDs[pid] {
			return
		}
		res.Owners[inode] = append(res.Owners[inode], Owner{PID: pid, FD: fd})
		procs[pid] = true
		res.FDs++
	})
	if err != nil {
		return nil, err
	}
	for ino, os := range res.Owners {
		slices.SortFunc(os, func(a, b Owner) int {
			return cmp.Or(cmp.Compare(a.PID, b.PID), cmp.Compare(a.FD, b.FD))
		})
		res.Owners[ino] = slices.CompactFunc(os, func(a, b Owner) bool { return a == b })
	}
	res.Processes = len(procs)
	res.Visited = len(procs)
	res.Method = "ebpf"
	return res, nil
}
