//go:build linux

package sockdiag

import (
	"fmt"
	"unsafe"

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
	one := []Socket{*s}
	errs, err := c.LookupAll(one)
	if err != nil {
		return err
	}
	if errs[0] != nil {
		return errs[0]
	}
	*s = one[0]
	return nil
}

// lookupBatch is how many exact requests LookupAll puts in one datagram:
// 128 requests of 72 bytes, and replies with tcp_info of about 300 bytes
// each, well within a netlink socket's default receive buffer.
const lookupBatch = 128

// LookupAll is [Conn.Lookup] for many sockets: the requests go out in
// batches, many to a datagram, and the replies are matched by sequence
// number, so n sockets cost a few system calls instead of 2n. socks[i] is
// replaced by the kernel's answer when errs[i] is nil; errs[i] wraps
// [ErrGone] for a socket closed since it was listed. A failed send or
// receive is returned as err, with errs undefined.
func (c *Conn) LookupAll(socks []Socket) (errs []error, err error) {
	errs = make([]error, len(socks))
	for start := 0; start < len(socks); start += lookupBatch {
		batch := socks[start:min(start+lookupBatch, len(socks))]
		if err := c.lookupBatch(batch, errs[start:]); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

func (c *Conn) lookupBatch(socks []Socket, errs []error) error {
	buf := make([]byte, 0, len(socks)*int(unsafe.Sizeof(nlRequest{})))
	first := c.seq + 1
	for i := range socks {
		s := &socks[i]
		if s.Family != unix.AF_INET && s.Family != unix.AF_INET6 {
			return fmt.Errorf("sockdiag lookup %v -> %v: unknown address family %d", s.Local, s.Remote, s.Family)
		}
		c.seq++
		r := nlRequest{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_REQUEST, Seq: c.seq, Req: exactRequest(s)}
		r.Req.Ext = 1 << (inetDiagInfo - 1)
		r.Len = uint32(unsafe.Sizeof(r))
		buf = append(buf, r.bytes()...)
	}
	if err := unix.Sendto(c.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sockdiag lookup of %d sockets: send: %w", len(socks), err)
	}
	answered := make([]bool, len(socks))
	left := len(socks)
	for left > 0 {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sockdiag lookup of %d sockets: receive: %w", len(socks), err)
		}
		err = eachMessage(b, func(typ uint16, seq uint32, msg []byte) (bool, error) {
			i := int(seq - first)
			if seq < first || i >= len(socks) || answered[i] {
				return true, nil // a reply to an older request on this socket
			}
			s := &socks[i]
			switch typ {
			case nlmsgError:
				errno, err := errnoOf(msg)
				if err != nil {
					return false, err
				}
				if errno == 0 {
					return true, nil // an ack; the answer is another message
				}
				if errno == unix.ENOENT {
					errs[i] = fmt.Errorf("sockdiag lookup %v -> %v: %w", s.Local, s.Remote, ErrGone)
				} else {
					errs[i] = fmt.Errorf("sockdiag lookup %v -> %v: %w", s.Local, s.Remote, errno)
				}
			case nlmsgDone, nlmsgNoop:
				return true, nil
			default:
				got := Socket{NetNS: c.netns}
				if err := parseInetDiagMsg(msg, &got); err != nil {
					return false, err
				}
				*s = got
			}
			answered[i] = true
			left--
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("sockdiag lookup of %d sockets: %w", len(socks), err)
		}
	}
	return nil
}
