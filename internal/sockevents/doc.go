// Package sockevents follows TCP sockets as they enter and leave CLOSE_WAIT,
// as the kernel reports it, so that long-running modes (watch, agent) need
// not dump every CLOSE_WAIT socket on every interval.
//
// A tiny eBPF program on the sock:inet_sock_set_state tracepoint (tp_btf,
// written with cilium/ebpf/asm, no clang) sees every TCP state change. For
// the changes into or out of CLOSE_WAIT it puts one record on a ring buffer:
// the socket cookie, the time, the network namespace, the old and new state
// and the raw head of struct sock_common (addresses, ports, family, bound
// interface), decoded in Go with offsets read from the kernel's BTF. A
// [Feed] drains the ring without waiting; when the ring overflowed between
// two drains, Drain says so and the caller reads the set in full again.
//
// Needs kernel 5.8 or later with BTF (the ring buffer, BTF tracepoints and
// bpf_get_socket_cookie from tracing programs) and CAP_BPF with
// CAP_PERFMON (or CAP_SYS_ADMIN). The program's licence is [License], as the
// kernel allows BTF pointer reads only to GPL-compatible programs.
package sockevents
