// Package ebpfstates counts a network namespace's TCP sockets by state
// inside the kernel, with a BPF tcp iterator: one walk of the socket hash
// tables adds each socket to a per-state counter, and no per-socket message
// crosses to user space.
//
// A sock_diag dump that only counts still has the kernel fill and send one
// message (about 100 bytes with its attributes) per socket, and it walks the
// established table once per address family. At 900k CLOSE_WAIT sockets,
// counting the other states that way cost about a third of a snapshot's
// CPU; the iterator walks the tables once and sends 16 counters.
//
// The counts follow sock_diag's conventions, so they add up with a dump's:
// a time-wait mini socket counts under its substate (TIME_WAIT, or
// FIN_WAIT2 for an orphaned FIN-WAIT-2 end), and a request socket
// (TCP_NEW_SYN_RECV) under SYN_RECV.
//
// # Requirements
//
// Linux ≥ 5.9 (the tcp iterator and bpf_skc_to_tcp_timewait_sock), the
// kernel's BTF (CONFIG_DEBUG_INFO_BTF), and CAP_BPF plus CAP_PERFMON or
// CAP_SYS_ADMIN. [Load] returns an error wrapping [ErrNotSupported] when any
// of these is missing; callers count with sock_diag instead.
//
// # Network namespaces
//
// The kernel walks the namespace of the thread that starts the pass: call
// [Counter.Count] from a thread inside the namespace to count (netns.Do).
//
// # The program
//
// Written with github.com/cilium/ebpf/asm (no C compiler at build time);
// the offsets of sock_common.skc_state and inet_timewait_sock.tw_substate
// come from the kernel's BTF at [Load].
package ebpfstates
