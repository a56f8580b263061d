// Package sockdiag reads TCP sockets straight from the kernel.
//
// It speaks NETLINK_SOCK_DIAG (inet_diag, the interface behind ss(8)):
// one dump request per address family, filtered by the kernel with a TCP
// state bitmask, streamed through a reused receive buffer and parsed without
// per-socket allocations. Each socket comes back with its state, addresses,
// queues, inode, uid, timer and, when asked, struct tcp_info.
//
// When netlink sock_diag is unavailable (a kernel without inet_diag, or a
// seccomp profile that forbids it), [ReadProcNet] parses /proc/net/tcp and
// /proc/net/tcp6 into the same [Socket] type, with fewer fields.
//
// # Privileges
//
// Dumping needs no privilege: any user sees every socket of its network
// namespace, with tcp_info. Destroying a socket ([Destroy]) needs
// CAP_NET_ADMIN and a kernel built with CONFIG_INET_DIAG_DESTROY (≥ 4.5).
//
// # Kernel structures
//
// The request and message layouts are those of include/uapi/linux/inet_diag.h;
// tcp_info is include/uapi/linux/tcp.h. Kernels return tcp_info shorter or
// longer than this package knows: the common prefix is used.
package sockdiag
