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
// It reports whether it advised any memory.
func adviseHugePages(socks []Socket) bool {
	return madviseHuge(socks, unix.MADV_HUGEPAGE)
}

// unadviseHugePages takes the advice back (MADV_NOHUGEPAGE, which in
// "madvise" mode is the default) from the memory of socks, once it is no
// longer needed: the Go heap reuses it for small objects, and after the
// memory is returned to the kernel, touching one of them would fault in
// and clear a whole huge page.
func unadviseHugePages(socks []Socket) {
	madviseHuge(socks, unix.MADV_NOHUGEPAGE)
}

func madviseHuge(socks []Socket, advice int) bool {
	size := uintptr(cap(socks)) * unsafe.Sizeof(Socket{})
	if size < 4<<20 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(socks[:1])))
	const huge = 2 << 20
	lo, hi := (start+huge-1)&^(huge-1), (start+size)&^(huge-1)
	if hi <= lo {
		return false
	}
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, uintptr(advice))
	return errno == 0
}
