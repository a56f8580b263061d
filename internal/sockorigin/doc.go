// Package sockorigin records where TCP sockets are made: for every socket
// a traced process creates, by connect() or by accept(), the user stack of
// the thread that made it, so that a socket later found in CLOSE_WAIT can be
// tied to the code that opened it, from outside the process.
//
// # Kernel side
//
// The programs, written with cilium/ebpf/asm (no clang):
//
//   - tp_btf on sock:inet_sock_set_state. CLOSE→SYN_SENT runs in the
//     context of the thread calling connect(): if its tgid is traced, the
//     socket is recorded. Any →CLOSE of a recorded socket (the socket is
//     done: closed by the application, reset, or a failed connect) adds one
//     to the "closed" count of its stack and forgets the socket.
//   - tp_btf on raw_syscalls:sys_exit, in the context of the thread
//     returning from accept() or accept4(): the socket behind the returned
//     fd (task->files->fdt->fd[ret]->private_data->sk: plain loads
//     through bpf_rdonly_cast, or reads with bpf_probe_read_kernel before
//     Linux 6.2) is recorded if the tgid is traced. The walk starts from
//     the user registers the tracepoint hands it.
//     fexit on inet_csk_accept would be cheaper (no program on every
//     system call) but some kernels refuse fentry/fexit programs (EPERM on
//     the Firecracker kernel this was written on, which also has no
//     kprobes); every system
//     call then pays the tracepoint and a compare of the call number, and
//     the kernel's slow system call path that any syscall tracepoint
//     turns on for every task.
//   - iter/tcp, run by Sample: gives each recorded socket its cookie (the
//     accept hook has the socket as a plain address, which
//     bpf_get_socket_cookie does not take).
//   - a syscall program, run by Open and by Sample, that reads jiffies and
//     CLOCK_MONOTONIC side by side. A creation is stamped with jiffies
//     (bpf_jiffies64, which the verifier inlines into one load;
//     bpf_ktime_get_ns cost about 150-200 ns a creation on the virtual
//     machine this was measured on, where its clock read is slow), and
//     the two pairs' rate turns stamps into time, within a tick or two.
//
// A record is the user stack, walked through frame pointers by the programs
// themselves from a copy of the stack's top page (the kernel's walk,
// bpf_get_stackid, reads user memory once per frame and cost about 3 µs
// per Go dial on the machine this was written on; see prog_linux.go), the
// frames hashed and stored once per distinct stack, plus the 64 bytes at
// the user stack pointer: the leaf function
// (a libc or runtime syscall wrapper) usually keeps no frame pointer, so its
// caller's return address is on the stack but not in the frame chain;
// package symbolize finds it there.
//
// Processes are chosen by tgid in a bitmap the programs read first (an
// array map: the lookup is inlined), so other processes pay a bit test per
// connect and accept.
//
// Recorded sockets live in a set-associative table keyed by their struct
// sock address: a hash of the address picks a set of 16 ways; one array
// map holds each set's 16 addresses (two cache lines), another the sets'
// records. Array lookups are inlined by the verifier: recording a socket,
// or finding it when it reaches TCP_CLOSE, takes no helper call, lock or
// allocation (the hash map it replaced cost about 450 ns a creation, its
// insert and delete included); a way is claimed and freed with
// compare-and-swap. A socket reaching TCP_CLOSE (before the kernel frees
// it: an address is never stale) compares its set's 16 addresses with its
// own: other processes pay that per close. Each stack has a slot in an
// array of closed counts, so that counting a close costs no hash lookup.
// Socket-local storage (BPF_MAP_TYPE_SK_STORAGE) would free records with
// their socket, but the accept hook has no socket pointer the helper
// takes, and creating it from the connect path cost about 1.2 µs more a
// socket than the hash insert and delete on the kernel this was measured
// on.
//
// # Bounds
//
// [MaxSockets] recorded sockets (a creation whose set has no free way is
// counted as dropped: 13 of 100,000 live sockets in bench/tracemem, about
// 100 at 131,072 by a Poisson estimate),
// [MaxStacks] distinct stacks of at most [MaxDepth] frames per process,
// each with its closed counter, [MaxPIDs] traced processes. A creation
// whose stack cannot be stored is counted as dropped too.
//
// Needs Linux 5.15 or later with BTF (bpf_task_pt_regs) and CAP_BPF with
// CAP_PERFMON (or CAP_SYS_ADMIN), in the host's pid namespace (the kernel
// reports host tgids).
package sockorigin
