//go:build linux

package sockdiag

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported reports that netlink sock_diag is not available here.
var ErrNotSupported = errors.New("sockdiag: netlink sock_diag not supported")

// Request selects the sockets of one dump.
type Request struct {
	// States is the set of TCP states the kernel should return. Zero means all.
	States StateSet
	// Info asks for struct tcp_info with each socket (INET_DIAG_INFO).
	Info bool
	// Families lists AF_INET and/or AF_INET6, one walk of the kernel's
	// tables each. Empty means both in one walk (the compat request).
	Families []uint8
}

// Conn is a NETLINK_SOCK_DIAG socket with a reused receive buffer.
// A Conn is not safe for concurrent use.
type Conn struct {
	fd    int
	buf   []byte
	seq   uint32
	netns uint64

	onDatagram func([]byte) // sees every raw reply datagram (recording fixtures)
	noCompat   bool         // the compat AF_UNSPEC dump was refused: dump per family
}

// recvBufSize is large enough for any dump datagram: the kernel fills dump
// datagrams up to 32 KiB (netlink_dump caps max_recvmsg_len at 32768).
const recvBufSize = 64 << 10

// Dial opens a sock_diag socket in the calling thread's network namespace.
func Dial() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("open netlink socket: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// A large kernel-side buffer lets the dump run ahead of the parser.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	c := &Conn{fd: fd, buf: make([]byte, recvBufSize)}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err == nil {
		c.netns = st.Ino
	}
	return c, nil
}

// NetNS returns the inode of the network namespace the Conn was opened in, or 0.
func (c *Conn) NetNS() uint64 { return c.netns }

// Close releases the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// Dump asks the kernel for the sockets req selects and calls fn for each.
// The *Socket passed to fn is reused: copy it to keep it. fn returning false
// ends the dump early. Sockets are filtered by state in the kernel.
func (c *Conn) Dump(req Request, fn func(*Socket) bool) error {
	fams := req.Families
	if len(fams) == 0 {
		// Both families in one walk of the kernel's tables (the compat
		// request), else one walk per family.
		if !c.noCompat {
			err := c.dumpFamily(unix.AF_UNSPEC, req, fn)
			if !errors.Is(err, errCompatRefused) {
				return err
			}
			c.noCompat = true
		}
		fams = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	stop := false
	wrapped := func(s *Socket) bool {
		if !fn(s) {
			stop = true
			return false
		}
		return true
	}
	for _, fam := range fams {
		if err := c.dumpFamily(fam, req, wrapped); err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
	return nil
}

func (c *Conn) dumpFamily(fam uint8, req Request, fn func(*Socket) bool) error {
	states := req.States
	if states == 0 {
		states = AllStates
	}
	r := inetDiagReqV2{Family: fam, Protocol: unix.IPPROTO_TCP, States: uint32(states)}
	if req.Info {
		r.Ext = 1 << (inetDiagInfo - 1)
	}
	var err error
	if fam == unix.AF_UNSPEC {
		c.seq++
		cr := nlCompatRequest{Type: tcpdiagGetSock, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: c.seq, Ext: r.Ext, States: r.States}
		cr.Len = uint32(unsafe.Sizeof(cr))
		err = unix.Sendto(c.fd, cr.bytes(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	} else {
		err = c.send(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, r)
	}
	if err != nil {
		return fmt.Errorf("sockdiag dump %s: send: %w", familyName(fam), err)
	}
	s := Socket{NetNS: c.netns}
	stopped, first := false, true
	for {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sockdiag dump %s: receive: %w", familyName(fam), err)
		}
		if c.onDatagram != nil {
			c.onDatagram(b)
		}
		cb := fn
		if stopped {
			cb = discard // drain the rest of the dump so the next request starts clean
		}
		done, err := parseDatagram(b, c.seq, &s, cb)
		if err != nil {
			if errors.Is(err, unix.ENOENT) && fam == unix.AF_INET6 {
				return nil // IPv6 disabled: no sockets of that family
			}
			if fam == unix.AF_UNSPEC && first && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP)) {
				return errCompatRefused // nothing delivered yet: the caller dumps per family
			}
			return fmt.Errorf("sockdiag dump %s: %w", familyName(fam), err)
		}
		first = false
		switch done {
		case doneEnd:
			return nil
		case doneStopped:
			stopped = true
		}
	}
}

// send sends one request of type typ (flags besides NLM_F_REQUEST) on the
// Conn's next sequence number.
func (c *Conn) send(typ, flags uint16, req inetDiagReqV2) error {
	c.seq++
	r := nlRequest{Type: typ, Flags: unix.NLM_F_REQUEST | flags, Seq: c.seq, Req: req}
	r.Len = uint32(unsafe.Sizeof(r))
	return unix.Sendto(c.fd, r.bytes(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// recv reads one reply datagram into the Conn's buffer, retrying on EINTR.
func (c *Conn) recv() ([]byte, error) {
	for {
		n, err := unix.Read(c.fd, c.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return c.buf[:n], nil
	}
}

// errCompatRefused says the kernel refused the compat AF_UNSPEC dump.
var errCompatRefused = errors.New("compat dump refused")

func familyName(f uint8) string {
	switch f {
	case unix.AF_UNSPEC:
		return "AF_UNSPEC"
	case unix.AF_INET:
		return "AF_INET"
	case unix.AF_INET6:
		return "AF_INET6"
	}
	return fmt.Sprintf("family %d", f)
}

// Dump opens a Conn, runs one dump and closes it.
func Dump(req Request, fn func(*Socket) bool) error {
	c, err := Dial()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Dump(req, fn)
}

// RecordDump runs one dump and returns its first reply datagram as raw
// bytes, for test fixtures.
func RecordDump(req Request) ([]byte, error) {
	c, err := Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var first []byte
	c.onDatagram = func(b []byte) {
		if first == nil {
			first = append([]byte(nil), b...)
		}
	}
	if err := c.Dump(req, discard); err != nil {
		return nil, err
	}
	return first, nil
}
