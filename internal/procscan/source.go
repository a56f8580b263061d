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

// SocketFDPIDSource is a SocketFDSource that can also visit some processes
// only, for much less than a pass over every process (the eBPF iterator
// parameterised by pid, Linux 6.1).
type SocketFDPIDSource interface {
	SocketFDSource
	EachWantedIn(pids []int, wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error
}

// findOwnersFrom asks src for the owners. The pass is complete (every
// process is visited), so sockets shared by unrelated processes are found
// too; except that with ScanOptions.Likely and a SocketFDPIDSource, the
// likely processes are visited first, and the complete pass runs only for
// the sockets they do not hold.
func (fs FS) findOwnersFrom(src SocketFDSource, wanted map[uint64]struct{}, opt ScanOptions) (*ScanResult, error) {
	res := &ScanResult{Owners: make(map[uint64][]Owner, len(wanted))}
	procs := map[int]bool{}
	// Most sockets have one owner: each gets a one-element window of a
	// slab instead of an allocation of its own (a second owner appends
	// past the window's capacity, into a new array).
	slab := make([]Owner, 0, len(wanted))
	last := -1
	add := func(pid, fd int, inode uint64) {
		if opt.OnlyPIDs != nil && !opt.OnlyPIDs[pid] {
			return
		}
		o := Owner{PID: pid, FD: fd}
		if os, ok := res.Owners[inode]; ok {
			res.Owners[inode] = append(os, o)
		} else if len(slab) < cap(slab) {
			slab = append(slab, o)
			res.Owners[inode] = slab[len(slab)-1 : len(slab) : len(slab)]
		} else {
			res.Owners[inode] = []Owner{o}
		}
		if pid != last { // a process's fds come in a row
			procs[pid] = true
			last = pid
		}
		res.FDs++
	}
	rest := wanted
	if ps, ok := src.(SocketFDPIDSource); ok && len(opt.Likely) > 0 && len(wanted) > 0 && !opt.Complete {
		var err error
		for _, pid := range opt.Likely { // in order, until every socket is found
			if err = ps.EachWantedIn([]int{pid}, wanted, add); err != nil {
				break
			}
			res.Targeted++
			if len(res.Owners) == len(wanted) {
				break
			}
		}
		if err == nil {
			rest = make(map[uint64]struct{}, len(wanted)-len(res.Owners))
			for ino := range wanted {
				if _, found := res.Owners[ino]; !found {
					rest[ino] = struct{}{}
				}
			}
		} else {
			clear(res.Owners) // the complete pass finds them all again
			clear(procs)
			last = -1
			slab = slab[:0:0] // windows of the cleared owners may still be referenced
			res.FDs, res.Targeted = 0, 0
		}
	}
	if len(rest) > 0 {
		if err := src.EachWanted(rest, add); err != nil {
			return nil, err
		}
	}
	for ino, os := range res.Owners {
		if len(os) < 2 {
			continue
		}
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

// SocketFDLister lists every socket fd of every process in one pass,
// unfiltered (the eBPF iterator's Each).
type SocketFDLister interface {
	Each(fn func(pid, fd int, inode uint64)) error
}

// Prefetch starts a pass of src in the background and returns a source that
// answers from what that pass saw, waiting for it to end. It lets the owner
// lookup run while the kernel's socket dump runs, on another core. Like any
// two separate reads of the kernel, a socket whose fd appears after the pass
// visited its process has no owner in that snapshot.
func Prefetch(src SocketFDLister) SocketFDSource {
	p := &prefetched{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.triples = make([]fdTriple, 0, 4096)
		p.err = src.Each(func(pid, fd int, inode uint64) {
			p.triples = append(p.triples, fdTriple{inode: inode, pid: int32(pid), fd: int32(fd)})
		})
		if p.err == nil {
			sortTriples(p.triples) // for OwnersOf, while the caller still waits for its dump
		}
	}()
	return p
}

type fdTriple struct {
	inode   uint64
	pid, fd int32
}

type prefetched struct {
	done    chan struct{}
	triples []fdTriple // sorted by inode, pid, fd
	err     error
}

// sorted returns the pass's fds, sorted by inode, pid, fd; call it after done.
func (p *prefetched) sorted() []fdTriple { return p.triples }

// EachWanted waits for the background pass and replays its wanted triples.
func (p *prefetched) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	<-p.done
	if p.err != nil {
		return p.err
	}
	for _, t := range p.triples {
		if _, ok := wanted[t.inode]; ok {
			fn(int(t.pid), int(t.fd), t.inode)
		}
	}
	return nil
}
