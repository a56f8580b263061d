package leakcheck

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpState asks the kernel for the TCP state of c with getsockopt
// TCP_INFO (struct tcp_info, include/uapi/linux/tcp.h). lastAck is
// tcpi_last_ack_recv: for an idle CLOSE_WAIT socket, the time since the
// peer's FIN.
func tcpState(c net.Conn) (state uint8, lastAck time.Duration, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, 0, ErrNotTCP
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var info *unix.TCPInfo
	var serr error
	err = raw.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO)
	})
	if err != nil {
		return 0, 0, err
	}
	if serr != nil {
		if errors.Is(serr, unix.EOPNOTSUPP) || errors.Is(serr, unix.ENOPROTOOPT) {
			return 0, 0, ErrNotTCP
		}
		return 0, 0, serr
	}
	return info.State, time.Duration(info.Last_ack_recv) * time.Millisecond, nil
}
