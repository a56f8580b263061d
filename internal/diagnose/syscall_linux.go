package diagnose

import "golang.org/x/sys/unix"

// syscallNames names the blocking system calls worth naming, by number on
// the build's architecture.
var syscallNames = map[int]string{
	unix.SYS_FUTEX: "futex", unix.SYS_EPOLL_PWAIT: "epoll_pwait", unix.SYS_PPOLL: "ppoll",
	unix.SYS_PSELECT6: "pselect6", unix.SYS_READ: "read", unix.SYS_RECVFROM: "recvfrom",
	unix.SYS_RECVMSG: "recvmsg", unix.SYS_ACCEPT4: "accept4", unix.SYS_ACCEPT: "accept",
	unix.SYS_CLOCK_NANOSLEEP: "clock_nanosleep", unix.SYS_NANOSLEEP: "nanosleep", unix.SYS_WAIT4: "wait4",
	unix.SYS_WRITE: "write", unix.SYS_SENDTO: "sendto", unix.SYS_CONNECT: "connect",
	unix.SYS_IO_URING_ENTER: "io_uring_enter", unix.SYS_EPOLL_PWAIT2: "epoll_pwait2",
}
