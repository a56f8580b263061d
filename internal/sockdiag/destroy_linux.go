//go:build linux

package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrDestroyNotSupported reports a kernel built without
// CONFIG_INET_DIAG_DESTROY: it cannot destroy sockets (the kernel answered
// EOPNOTSUPP).
var ErrDestroyNotSupported = errors.New("this kernel cannot destroy sockets (built without CONFIG_INET_DIAG_DESTROY)")

// ErrDestroyPermission reports that the kernel refused SOCK_DESTROY for lack
// of CAP_NET_ADMIN in the socket's network namespace (EPERM).
var ErrDestroyPermission = errors.New("destroying sockets needs CAP_NET_ADMIN (run as root)")

// ErrGone reports that the socket to destroy is no longer in the kernel's
// table: it was closed, or its address pair now belongs to another socket
// (the cookie did not match) (ENOENT).
var ErrGone = errors.New("socket is gone already")

// Destroy asks the kernel to destroy socket s (SOCK_DESTROY, what ss -K
// does): the connection is aborted at once, the peer gets a RST if the state
// calls for one, and the socket leaves the TCP table. The process that holds
// it keeps its file descriptor: its next write fails with ECONNABORTED and
// its reads return what is left then EOF, until it calls close().
//
// The request names the socket exactly: family, addresses, ports, bound
// interface and kernel cookie, so a socket closed since the dump (whose
// address pair may now be another connection's) is never hit: the kernel
// answers ENOENT, returned as [ErrGone].
//
// s must come from a dump on a Conn opened in the same network namespace as
// c. Destroy needs CAP_NET_ADMIN ([ErrDestroyPermission]) and a kernel built
// with CONFIG_INET_DIAG_DESTROY, Linux ≥ 4.5 ([ErrDestroyNotSupported]).
// Errors wrap the kernel's errno.
func (c *Conn) Destroy(s *Socket) error {
	if s.Family != unix.AF_INET && s.Family != unix.AF_INET6 {
		return fmt.Errorf("sockdiag destroy %v -> %v: unknown address family %d", s.Local, s.Remote, s.Family)
	}
	if err := c.send(unix.SOCK_DESTROY, unix.NLM_F_ACK, exactRequest(s)); err != nil {
		return fmt.Errorf("sockdiag destroy %v -> %v: send: %w", s.Local, s.Remote, err)
	}
	for {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sockdiag destroy %v -> %v: receive: %w", s.Local, s.Remote, err)
		}
		errno, found, err := parseAck(b, c.seq)
		if err != nil {
			return fmt.Errorf("sockdiag destroy %v -> %v: %w", s.Local, s.Remote, err)
		}
		if !found {
			continue // a stale reply to an earlier request
		}
		return destroyError(s, errno)
	}
}

// destroyError turns the kernel's answer into an error wrapping a sentinel
// and the errno.
func destroyError(s *Socket, errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	var sentinel error
	switch errno {
	case unix.EPERM, unix.EACCES:
		sentinel = ErrDestroyPermission
	case unix.EOPNOTSUPP:
		sentinel = ErrDestroyNotSupported
	case unix.ENOENT:
		sentinel = ErrGone
	default:
		return fmt.Errorf("sockdiag destroy %v -> %v: %w", s.Local, s.Remote, errno)
	}
	return fmt.Errorf("sockdiag destroy %v -> %v: %w: %w", s.Local, s.Remote, sentinel, errno)
}

// exactRequest builds the inet_diag_req_v2 that names s exactly (for
// SOCK_DESTROY and for one-socket lookups), with the
// addresses in the socket's own family (an IPv4 peer of an AF_INET6 socket is
// sent IPv4-mapped, as the kernel keeps it).
func exactRequest(s *Socket) inetDiagReqV2 {
	req := inetDiagReqV2{
		Family:   s.Family,
		Protocol: unix.IPPROTO_TCP,
		States:   uint32(NewStateSet(s.State)),
		If:       s.IfIndex,
		Cookie:   [2]uint32{uint32(s.Cookie), uint32(s.Cookie >> 32)},
	}
	binary.BigEndian.PutUint16(req.SPort[:], s.Local.Port())
	binary.BigEndian.PutUint16(req.DPort[:], s.Remote.Port())
	if s.Family == unix.AF_INET {
		l, r := s.Local.Addr().Unmap().As4(), s.Remote.Addr().Unmap().As4()
		copy(req.Src[:], l[:])
		copy(req.Dst[:], r[:])
	} else {
		req.Src = s.Local.Addr().As16() // an IPv4 address comes back as ::ffff:a.b.c.d
		req.Dst = s.Remote.Addr().As16()
	}
	return req
}

// parseAck looks for the NLMSG_ERROR answer to request seq in datagram b and
// returns its errno (0 for an acknowledgement).
func parseAck(b []byte, seq uint32) (errno syscall.Errno, found bool, err error) {
	for len(b) >= sizeofNlMsghdr {
		l := binary.NativeEndian.Uint32(b[0:4])
		typ := binary.NativeEndian.Uint16(b[4:6])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		if l < sizeofNlMsghdr || int(l) > len(b) {
			return 0, false, ErrTruncated
		}
		msg := b[sizeofNlMsghdr:l]
		next := min(nlmAlign(int(l)), len(b))
		b = b[next:]
		if mseq != seq || typ != nlmsgError {
			continue
		}
		if len(msg) < 4 {
			return 0, false, ErrTruncated
		}
		return syscall.Errno(-int32(binary.NativeEndian.Uint32(msg[0:4]))), true, nil
	}
	return 0, false, nil
}
