//go:build linux

package sockdiag

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Lookup asks the kernel for the one socket s names exactly (family,
// addresses, ports, bound interface and cookie, as from a dump on a Conn in
// the same network namespace) with its tcp_info, and replaces *s with the
// answer. A socket closed since the dump gives [ErrGone]. It costs one
// request and one reply, so a caller that keeps tcp_info from an earlier
// dump can fetch it for the few new sockets only, instead of asking a dump
// of many thousands for it.
func (c *Conn) Lookup(s *Socket) error {
	if s.Family != unix.AF_INET && s.Family != unix.AF_INET6 {
		return fmt.Errorf("sockdiag lookup %v -> %v: unknown address family %d", s.Local, s.Remote, s.Family)
	}
	r := exactRequest(s)
	r.Ext = 1 << (inetDiagInfo - 1)
	if err := c.send(unix.SOCK_DIAG_BY_FAMILY, 0, r); err != nil {
		return fmt.Errorf("sockdiag lookup %v -> %v: send: %w", s.Local, s.Remote, err)
	}
	got := Socket{NetNS: c.netns}
	for {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sockdiag lookup %v -> %v: receive: %w", s.Local, s.Remote, err)
		}
		found := false
		_, err = parseDatagram(b, c.seq, &got, func(*Socket) bool { found = true; return false })
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("sockdiag lookup %v -> %v: %w", s.Local, s.Remote, ErrGone)
		}
		if err != nil {
			return fmt.Errorf("sockdiag lookup %v -> %v: %w", s.Local, s.Remote, err)
		}
		if found {
			*s = got
			return nil
		}
		// only replies to older requests in this datagram: read on
	}
}
