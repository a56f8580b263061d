package ebpfowners_test

import (
	"fmt"

	"github.com/closewait/closewait/internal/ebpfowners"
)

// Load once, keep the Iterator, and fall back to the /proc walk on any
// error.
func Example() {
	if !ebpfowners.InInitPIDNS() {
		return // use the /proc walk
	}
	it, err := ebpfowners.Load()
	if err != nil {
		return // use the /proc walk; err says why
	}
	defer it.Close()
	owners := map[uint64][]int{} // inode -> pids
	if err := it.Each(func(pid, fd int, inode uint64) {
		owners[inode] = append(owners[inode], pid)
	}); err != nil {
		return // use the /proc walk
	}
	fmt.Println(len(owners) >= 0)
}
