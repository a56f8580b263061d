package ebpfowners

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// linkCreateIterAttr is the BPF_LINK_CREATE part of union bpf_attr for an
// iterator with bpf_iter_link_info (include/uapi/linux/bpf.h).
type linkCreateIterAttr struct {
	progFD      uint32
	targetFD    uint32
	attachType  uint32
	flags       uint32
	iterInfo    uint64 // pointer to iterTaskInfo
	iterInfoLen uint32
	_           uint32
}

// iterTaskInfo is the task member of union bpf_iter_link_info: a pid
// restricts a task_file iterator to that process (Linux 6.1).
type iterTaskInfo struct {
	tid, pid, pidFD uint32
	_               uint32
}

// EachWantedIn is [Iterator.EachWanted] over the processes pids only: one
// task_file iterator per process, parameterised by its pid, so the kernel
// walks only their fd tables (a pass over every process costs a walk of
// every fd on the host). It suits a few likely owners; a pid that has
// exited is skipped. Errors wrap [ErrNotSupported] on kernels before 6.1,
// which cannot parameterise the iterator: use EachWanted there.
func (it *Iterator) EachWantedIn(pids []int, wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	if it == nil || it.coll == nil {
		return errors.New("ebpfowners: each wanted in: iterator is closed")
	}
	if len(wanted) == 0 || len(pids) == 0 {
		return nil
	}
	prog := it.coll.Programs[progName]
	for _, pid := range pids {
		err := eachIn(prog, pid, func(p, fd int, ino uint64) {
			if _, ok := wanted[ino]; ok {
				fn(p, fd, ino)
			}
		})
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			continue // exited
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// eachIn runs one pass of prog over the fd table of process pid.
func eachIn(prog *ebpf.Program, pid int, fn func(pid, fd int, inode uint64)) error {
	info := iterTaskInfo{pid: uint32(pid)}
	attr := linkCreateIterAttr{
		progFD:      uint32(prog.FD()),
		attachType:  unix.BPF_TRACE_ITER,
		iterInfo:    uint64(uintptr(unsafe.Pointer(&info))),
		iterInfoLen: uint32(unsafe.Sizeof(info)),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	if errno != 0 {
		err := fmt.Errorf("ebpfowners: attach task_file iterator to pid %d: %w", pid, errno)
		if errno == unix.EINVAL || errno == unix.E2BIG {
			err = fmt.Errorf("%w (kernel before 6.1?): %w", ErrNotSupported, err)
		}
		return err
	}
	l, err := link.NewFromFD(int(fd))
	if err != nil {
		unix.Close(int(fd))
		return fmt.Errorf("ebpfowners: wrap iterator link: %w", err)
	}
	defer l.Close()
	iter, ok := l.(*link.Iter)
	if !ok {
		return fmt.Errorf("ebpfowners: iterator link is a %T", l)
	}
	return read(iter, fn)
}
