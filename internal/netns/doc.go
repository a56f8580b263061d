// Package netns finds the host's network namespaces and runs code inside them.
//
// # Finding namespaces
//
// [List] visits /proc/PID/ns/net for every process (each namespace once, by
// the inode of its nsfs file) and the names under /run/netns made by
// `ip netns add`, so a named namespace with no process in it is found too.
// It works the same when closewait runs in a container that shares the
// host's PID namespace: other processes' namespaces are reachable through
// their /proc/PID/ns/net.
//
// # Entering a namespace
//
// [Do] runs a function on a thread moved into a namespace (setns(2)) and
// moves the thread back before anything else can run on it. Use it only to
// open sockets: a socket keeps the namespace it was created in, so a netlink
// sock_diag socket opened inside [Do] dumps that namespace from any goroutine
// afterwards.
//
// # Privileges
//
// Reading another user's /proc/PID/ns/net needs root or CAP_SYS_PTRACE;
// entering a namespace needs CAP_SYS_ADMIN (EPERM otherwise, reported as
// [ErrPermission]).
package netns
