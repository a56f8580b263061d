// Package ebpfowners maps socket inodes to the processes that hold them
// (pid, fd, inode) with a BPF task_file iterator, a fast path for the
// /proc/PID/fd walk.
//
// The /proc walk costs one readlink per fd (about 5 µs of kernel time each);
// the iterator walks every task's fd table inside the kernel and emits one
// 16-byte record {tgid u32, fd u32, inode u64} per socket fd only, so a pass
// costs a few read(2) calls on the iterator.
//
// # Requirements
//
// Linux ≥ 5.8 (bpf_iter task_file and bpf_seq_write; the in-kernel inode
// filter of [Iterator.EachWanted] also uses a BPF hash map), the kernel's own
// BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF), and CAP_BPF plus
// CAP_PERFMON, or CAP_SYS_ADMIN. [Load] returns an error wrapping
// [ErrNotSupported] when any of these is missing; callers fall back to the
// /proc walk on any error from [Load] or [Iterator.Each].
//
// # Pid namespaces
//
// The program reports task->tgid, the pid in the initial pid namespace, and
// the kernel only visits the tasks of the reader's pid namespace. Use the
// iterator only when [InInitPIDNS] is true.
//
// # How the program is built
//
// There is no C compiler at build time: the program is 27 instructions (42
// with the filter)
// written with github.com/cilium/ebpf/asm. Hand-written instructions get no
// CO-RE relocations, so [Load] reads the offsets and widths of
// bpf_iter__task_file.{meta,task,fd,file}, bpf_iter_meta.seq,
// task_struct.{pid,tgid}, file.f_inode and inode.{i_mode,i_ino} from the
// kernel BTF (parsed once per Load, and shared with the program loader), and
// patches them into the loads. Each load's width is the member's BTF size;
// offsets beyond the 16-bit instruction offset are first added to the
// pointer register. Loads go directly through BTF pointers (the verifier
// turns them into fault-tolerant PROBE_MEM loads); task and file may be NULL
// and are checked, and so is file->f_inode.
//
// [Iterator.EachWanted] runs a variant that first tests the inode against a
// 1 MiB bitmap (inode mod 2^23) written through mmap before each pass, and
// drops the rare false positives in Go. Most of a pass is the kernel's own
// fd walk and the cache misses of reading file and inode, so the filter
// saves the emission and decoding only (about 10% of the CPU of a pass
// here), not the walk.
//
// Threads are not emitted: only thread-group leaders (task->pid ==
// task->tgid), so the result is exactly what readlink over /proc/PID/fd
// gives for every PID. A thread that unshared its fd table (unshare
// CLONE_FILES) is missed, as it is by the /proc/PID/fd walk.
//
// # Licence string
//
// The program is loaded with the licence string "Dual MIT/GPL". The kernel
// refuses kernel-struct (BTF pointer) access and the tracing helpers to a
// program whose licence string is not GPL-compatible, and "Dual MIT/GPL" is
// one the kernel accepts as compatible (include/linux/license.h). This string
// concerns only the in-kernel program built at run time; it is not the
// licence of closewait's Go source.
package ebpfowners
