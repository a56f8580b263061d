package procscan

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// CanJoin reports whether OwnersOf can use src: an unfiltered pass
// (SocketFDLister, the eBPF iterator) or a Prefetch source.
func CanJoin(src SocketFDSource) bool {
	switch src.(type) {
	case *prefetched, SocketFDLister:
		return true
	}
	return false
}

// OwnersOf finds, in one unfiltered pass of src, the owners of n sockets:
// inode(i) is the inode of the i-th (0: it has none and is never matched),
// and set(i, owners) is called once for each socket found held, with its
// owners sorted by pid then fd. The slices handed to set are full-capacity
// windows of one array (an append never writes into a neighbour's owners).
//
// It is FindOwners for when most of a snapshot's sockets are searched (a
// first snapshot, a full check): it joins by sorting the sockets and the
// pass's fds by inode instead of building a map of the wanted inodes and
// another of the owners found. At 100k sockets that is about 4 MB, the
// owners themselves included, instead of 11 MB, and no per-socket map
// operation. A Prefetch source's fds are sorted by the background pass that
// read them. Inodes beyond 32 bits (never a socket's) are an error: the
// caller falls back to FindOwners.
//
// src must be a SocketFDLister or a Prefetch source (CanJoin).
func OwnersOf(src SocketFDSource, n int, inode func(i int) uint64, set func(i int, owners []Owner)) (*ScanResult, error) {
	var fds []fdTriple
	switch src := src.(type) {
	case *prefetched:
		<-src.done
		if src.err != nil {
			return nil, src.err
		}
		fds = src.sorted()
	case SocketFDLister:
		fds = make([]fdTriple, 0, n+n/8+64)
		if err := src.Each(func(pid, fd int, ino uint64) {
			fds = append(fds, fdTriple{inode: ino, pid: int32(pid), fd: int32(fd)})
		}); err != nil {
			return nil, err
		}
		sortTriples(fds)
	default:
		return nil, fmt.Errorf("procscan: owners of: %T lists no unfiltered pass", src)
	}

	// Each socket as inode<<32 | index, sorted as plain integers: half the
	// memory of a struct and a faster sort. Socket inodes are 32 bits
	// (sock_diag's idiag_inode; sockfs numbers them with get_next_ino).
	if uint64(n) > math.MaxUint32 {
		return nil, fmt.Errorf("procscan: owners of: %d sockets", n)
	}
	socks := make([]uint64, 0, n)
	for i := range n {
		ino := inode(i)
		if ino > math.MaxUint32 {
			return nil, fmt.Errorf("procscan: owners of: inode %d beyond 32 bits", ino)
		}
		if ino != 0 {
			socks = append(socks, ino<<32|uint64(i))
		}
	}
	slices.Sort(socks)

	// The merge of the two sorted lists, run twice: to count each
	// socket's owners, then to write them into one array, in the sockets'
	// order (the order the snapshot's later passes read them in). A
	// socket's run of fds is already in pid, fd order; a repeated (pid, fd)
	// is counted once.
	merge := func(fn func(i int32, run []fdTriple)) {
		j := 0
		for k, s := range socks {
			ino, i := s>>32, int32(uint32(s))
			if k > 0 && socks[k-1]>>32 == ino {
				for j > 0 && fds[j-1].inode == ino { // the same inode again: the same run
					j--
				}
			}
			for j < len(fds) && fds[j].inode < ino {
				j++
			}
			e := j
			for e < len(fds) && fds[e].inode == ino {
				e++
			}
			if e > j {
				fn(i, fds[j:e])
			}
			j = e
		}
	}
	distinct := func(run []fdTriple, fn func(t fdTriple)) {
		for k, t := range run {
			if k == 0 || t.pid != run[k-1].pid || t.fd != run[k-1].fd {
				fn(t)
			}
		}
	}
	// at holds each socket's count of owners, then where they start, then
	// where they end.
	at := make([]int32, n)
	merge(func(i int32, run []fdTriple) {
		distinct(run, func(fdTriple) { at[i]++ })
	})
	total := int32(0)
	for i, c := range at {
		at[i] = total
		total += c
	}
	slab := make([]Owner, total)
	res := &ScanResult{Method: "ebpf", FDs: int(total)}
	procs := map[int32]bool{}
	last := int32(-1)
	merge(func(i int32, run []fdTriple) {
		distinct(run, func(t fdTriple) {
			slab[at[i]] = Owner{PID: int(t.pid), FD: int(t.fd)}
			at[i]++
			if t.pid != last {
				procs[t.pid] = true
				last = t.pid
			}
		})
	})
	start := int32(0)
	for i, end := range at {
		if end > start {
			set(i, slab[start:end:end])
		}
		start = end
	}
	res.Processes = len(procs)
	res.Visited = len(procs)
	return res, nil
}

// sortTriples orders fds by inode, then pid, then fd.
func sortTriples(fds []fdTriple) {
	slices.SortFunc(fds, func(a, b fdTriple) int {
		return cmp.Or(cmp.Compare(a.inode, b.inode), cmp.Compare(a.pid, b.pid), cmp.Compare(a.fd, b.fd))
	})
}
