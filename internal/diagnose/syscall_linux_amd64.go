package diagnose

import "golang.org/x/sys/unix"

// archSyscallNames names the blocking system calls that exist only on amd64.
var archSyscallNames = map[int]string{
	unix.SYS_POLL: "poll", unix.SYS_SELECT: "select", unix.SYS_EPOLL_WAIT: "epoll_wait", unix.SYS_PAUSE: "pause",
}
