// Package sockorigin records where TCP sockets are made: for every socket
// a traced process creates, by connect() or by accept(), the user stack of
// the thread that made it, so that a socket later found in CLOSE_WAIT can be
// tied to the code that opened it, from outside the process.
//
// # Kernel side
//
// Two programs, written with cilium/ebpf/asm (no clang):
//
//   - tp_btf on sock:inet_sock_set_state. CLOSE→SYN_SENT runs in the
//     context of the thread calling connect(): if its tgid is traced, the
//     socket is recorded. Any →CLOSE of a recorded socket (the socket is
//     done: closed by the application, reset, or a failed connect) adds one
//     to the "closed" count of its stack and forgets the socket.
//   - fexit on inet_csk_accept, in the context of the thread calling
//     accept(): the returned socket is recorded if the tgid is traced.
//
// A record is the user stack, walked by the kernel through frame pointers
// (bpf_get_stackid with BPF_F_USER_STACK, deduplicated in a stack-trace
// map), plus the 64 bytes at the user stack pointer: the leaf function
// (a libc or runtime syscall wrapper) usually keeps no frame pointer, so its
// caller's return address is on the stack but not in the frame chain;
// package symbolize finds it there.
//
// Processes are chosen by tgid in a hash map the programs read first:
// other processes pay one map lookup per connect and accept, and a
// cookie lookup when one of their sockets closes.
//
// # Bounds
//
// [MaxSockets] live recorded sockets, [MaxStacks] distinct stacks of at
// most [MaxDepth] frames, [MaxClosed] (process, stack) closed counters,
// [MaxPIDs] traced processes. A creation that finds a map full, or whose
// stack cannot be stored, is counted as dropped.
//
// Needs Linux 5.15 or later with BTF (bpf_task_pt_regs) and CAP_BPF with
// CAP_PERFMON (or CAP_SYS_ADMIN), in the host's pid namespace (the kernel
// reports host tgids).
package sockorigin
