package sockorigin

import "golang.org/x/sys/unix"

// System call numbers of this architecture that return accepted sockets.
const (
	sysAccept  = unix.SYS_ACCEPT
	sysAccept4 = unix.SYS_ACCEPT4
)
