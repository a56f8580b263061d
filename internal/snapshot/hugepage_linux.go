//go:build linux

package snapshot

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHugePages asks for transparent huge pages on the memory of a large
// socket slice about to be filled: 100k sockets are 25 MB, and faulting
// them in 4 KiB at a time cost more than the copying (THP in "madvise"
// mode, Debian's default). Best effort: errors are ignored.
func adviseHugePages(socks []Socket) {
	size := uintptr(cap(socks)) * unsafe.Sizeof(Socket{})
	if size < 4<<20 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(socks[:1])))
	const huge = 2 << 20
	lo, hi := (start+huge-1)&^(huge-1), (start+size)&^(huge-1)
	if hi > lo {
		unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_HUGEPAGE)
	}
}
