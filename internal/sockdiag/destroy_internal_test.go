//go:build linux

package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDestroyErrorSentinels(t *testing.T) {
	s := &Socket{Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:5555")}
	for _, tt := range []struct {
		errno syscall.Errno
		want  error
	}{
		{unix.EPERM, ErrDestroyPermission},
		{unix.EACCES, ErrDestroyPermission},
		{unix.EOPNOTSUPP, ErrDestroyNotSupported},
		{unix.ENOENT, ErrGone},
		{unix.EINVAL, unix.EINVAL},
	} {
		t.Run(unix.ErrnoName(tt.errno), func(t *testing.T) {
			err := destroyError(s, tt.errno)
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.errno) {
				t.Errorf("destroyError(%v) = %v, want it to wrap %v and the errno", tt.errno, err, tt.want)
			}
		})
	}
	if err := destroyError(s, 0); err != nil {
		t.Errorf("an ACK (errno 0) gave %v", err)
	}
	if err := destroyError(s, unix.EPERM); !errors.Is(err, os.ErrPermission) {
		t.Errorf("EPERM does not satisfy os.ErrPermission: %v", err)
	}
}

// ack builds an NLMSG_ERROR message answering seq with errno.
func ack(seq uint32, errno int32) []byte {
	b := make([]byte, 36) // nlmsghdr + error + the echoed request header
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nlmsgError)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	binary.NativeEndian.PutUint32(b[16:20], uint32(-errno))
	return b
}

func TestParseAck(t *testing.T) {
	two := append(ack(6, int32(unix.ENOENT)), ack(7, 0)...)
	for _, tt := range []struct {
		name  string
		b     []byte
		seq   uint32
		errno syscall.Errno
		found bool
		err   bool
	}{
		{"ack", ack(7, 0), 7, 0, true, false},
		{"EPERM", ack(7, int32(unix.EPERM)), 7, unix.EPERM, true, false},
		{"stale reply skipped", ack(6, int32(unix.ENOENT)), 7, 0, false, false},
		{"second of two", two, 7, 0, true, false},
		{"truncated header", ack(7, 0)[:20], 7, 0, false, true},
		{"short", ack(7, 0)[:10], 7, 0, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "truncated header" {
				binary.NativeEndian.PutUint32(tt.b[0:4], 36)
			}
			errno, found, err := parseAck(tt.b, tt.seq)
			if errno != tt.errno || found != tt.found || (err != nil) != tt.err {
				t.Errorf("parseAck = %v, %v, %v; want %v, %v, error %v", errno, found, err, tt.errno, tt.found, tt.err)
			}
		})
	}
}

func TestDestroyRequestLayout(t *testing.T) {
	s := &Socket{
		Family: unix.AF_INET6, State: CloseWait, IfIndex: 3, Cookie: 0x1122334455667788,
		Local:  netip.MustParseAddrPort("127.0.0.1:8080"), // a dual-stack socket's IPv4 peer, normalised
		Remote: netip.MustParseAddrPort("127.0.0.2:40000"),
	}
	r := exactRequest(s)
	if r.Family != unix.AF_INET6 || r.Protocol != unix.IPPROTO_TCP || r.If != 3 || r.States != 1<<CloseWait {
		t.Errorf("request header %+v", r)
	}
	if binary.BigEndian.Uint16(r.SPort[:]) != 8080 || binary.BigEndian.Uint16(r.DPort[:]) != 40000 {
		t.Errorf("ports %v %v", r.SPort, r.DPort)
	}
	if netip.AddrFrom16(r.Src) != netip.MustParseAddr("::ffff:127.0.0.1") || netip.AddrFrom16(r.Dst) != netip.MustParseAddr("::ffff:127.0.0.2") {
		t.Errorf("AF_INET6 addresses %v %v, want IPv4-mapped", netip.AddrFrom16(r.Src), netip.AddrFrom16(r.Dst))
	}
	if r.Cookie != [2]uint32{0x55667788, 0x11223344} {
		t.Errorf("cookie %x", r.Cookie)
	}
	s.Family = unix.AF_INET
	r = exactRequest(s)
	if [4]byte(r.Src[:4]) != [4]byte{127, 0, 0, 1} || r.Src[4] != 0 || [4]byte(r.Dst[:4]) != [4]byte{127, 0, 0, 2} {
		t.Errorf("AF_INET addresses %v %v", r.Src, r.Dst)
	}
}
