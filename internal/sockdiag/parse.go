package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"
)

// Sizes of the kernel structures (include/uapi/linux/netlink.h, inet_diag.h).
const (
	sizeofNlMsghdr    = 16
	sizeofInetDiagReq = 0x38 // struct inet_diag_req_v2
	sizeofInetDiagMsg = 0x48 // struct inet_diag_msg
	sizeofRtAttr      = 4

	nlmsgNoop  = 0x1
	nlmsgError = 0x2
	nlmsgDone  = 0x3

	inetDiagInfo = 2 // INET_DIAG_INFO attribute type
)

// ErrTruncated reports a netlink message shorter than its header claims.
var ErrTruncated = errors.New("sockdiag: truncated netlink message")

// doneState tells the reader what a parsed datagram ended with.
type doneState int

const (
	doneMore    doneState = iota // the dump continues in the next datagram
	doneEnd                      // NLMSG_DONE was seen
	doneStopped                  // the callback asked to stop
)

// eachMessage walks the netlink messages of one datagram and calls fn with
// each one's type, sequence number and payload; fn returning false stops.
func eachMessage(b []byte, fn func(typ uint16, seq uint32, msg []byte) (bool, error)) error {
	for len(b) >= sizeofNlMsghdr {
		l := binary.NativeEndian.Uint32(b[0:4])
		typ := binary.NativeEndian.Uint16(b[4:6])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		if l < sizeofNlMsghdr || int(l) > len(b) {
			return ErrTruncated
		}
		msg := b[sizeofNlMsghdr:l]
		next := nlmAlign(int(l))
		if next > len(b) {
			next = len(b)
		}
		b = b[next:]
		if more, err := fn(typ, mseq, msg); err != nil || !more {
			return err
		}
	}
	return nil
}

// errnoOf returns the errno of an NLMSG_ERROR payload (0 for an ack).
func errnoOf(msg []byte) (syscall.Errno, error) {
	if len(msg) < 4 {
		return 0, ErrTruncated
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(msg[0:4]))), nil
}

// parseDatagram walks one datagram of a dump reply: nlmsghdr, inet_diag_msg,
// then rtattrs. For each socket it fills *s (reused, never retained) and calls
// fn; fn returning false stops the walk.
func parseDatagram(b []byte, seq uint32, s *Socket, fn func(*Socket) bool) (done doneState, err error) {
	stopped := false
	done = doneMore
	err = eachMessage(b, func(typ uint16, mseq uint32, msg []byte) (bool, error) {
		if seq != 0 && mseq != seq {
			return true, nil // a reply to an older request on this socket
		}
		switch typ {
		case nlmsgDone:
			done = doneEnd
			return false, nil
		case nlmsgNoop:
			return true, nil
		case nlmsgError:
			errno, err := errnoOf(msg)
			if err == nil && errno != 0 {
				err = errno
			}
			return err == nil, err
		}
		if err := parseInetDiagMsg(msg, s); err != nil {
			return false, err
		}
		if !fn(s) {
			stopped = true
			fn = discard // walk on: NLMSG_DONE may follow in this datagram
		}
		return true, nil
	})
	if err != nil {
		return doneMore, err
	}
	if done == doneMore && stopped {
		return doneStopped, nil
	}
	return done, nil
}

// parseInetDiagMsg decodes one struct inet_diag_msg and its attributes into s.
func parseInetDiagMsg(m []byte, s *Socket) error {
	if len(m) < sizeofInetDiagMsg {
		return fmt.Errorf("inet_diag_msg of %d bytes: %w", len(m), ErrTruncated)
	}
	netns := s.NetNS
	*s = Socket{NetNS: netns}
	s.Family = m[0]
	s.State = State(m[1])
	s.Timer = m[2]
	s.TimerRetrans = m[3]
	// struct inet_diag_sockid at offset 4: sport, dport big-endian; src[4], dst[4].
	sport := binary.BigEndian.Uint16(m[4:6])
	dport := binary.BigEndian.Uint16(m[6:8])
	s.Local = netip.AddrPortFrom(addrFrom(s.Family, m[8:24]), sport)
	s.Remote = netip.AddrPortFrom(addrFrom(s.Family, m[24:40]), dport)
	s.IfIndex = binary.NativeEndian.Uint32(m[40:44])
	s.Cookie = uint64(binary.NativeEndian.Uint32(m[44:48])) | uint64(binary.NativeEndian.Uint32(m[48:52]))<<32
	s.TimerExpires = binary.NativeEndian.Uint32(m[52:56])
	s.RecvQ = binary.NativeEndian.Uint32(m[56:60])
	s.SendQ = binary.NativeEndian.Uint32(m[60:64])
	s.UID = binary.NativeEndian.Uint32(m[64:68])
	s.Inode = uint64(binary.NativeEndian.Uint32(m[68:72]))

	a := m[sizeofInetDiagMsg:]
	for len(a) >= sizeofRtAttr {
		al := int(binary.NativeEndian.Uint16(a[0:2]))
		at := binary.NativeEndian.Uint16(a[2:4])
		if al < sizeofRtAttr || al > len(a) {
			return fmt.Errorf("rtattr of %d bytes: %w", al, ErrTruncated)
		}
		if at&0x3fff == inetDiagInfo {
			decodeTCPInfo(a[sizeofRtAttr:al], &s.Info)
			s.HasInfo = true
		}
		n := rtaAlign(al)
		if n > len(a) {
			break
		}
		a = a[n:]
	}
	return nil
}

func addrFrom(family uint8, b []byte) netip.Addr {
	if family == syscall.AF_INET {
		return netip.AddrFrom4([4]byte(b[0:4]))
	}
	return netip.AddrFrom16([16]byte(b[0:16])).Unmap()
}

// Offsets in struct tcp_info (include/uapi/linux/tcp.h); stable since Linux 2.6.
const (
	tiState        = 0
	tiRetransmits  = 2
	tiLastDataSent = 44
	tiLastAckSent  = 48
	tiLastDataRecv = 52
	tiLastAckRecv  = 56
	tiRTT          = 68
	tiRTTVar       = 72
	tiTotalRetrans = 100
	tiBytesAcked   = 120
	tiBytesRecv    = 128
)

// decodeTCPInfo reads the fields closewait uses from a tcp_info of any length:
// fields past the end of b are left zero.
func decodeTCPInfo(b []byte, ti *TCPInfo) {
	*ti = TCPInfo{}
	u8 := func(off int) uint8 {
		if off < len(b) {
			return b[off]
		}
		return 0
	}
	u32 := func(off int) uint32 {
		if off+4 <= len(b) {
			return binary.NativeEndian.Uint32(b[off:])
		}
		return 0
	}
	u64 := func(off int) uint64 {
		if off+8 <= len(b) {
			return binary.NativeEndian.Uint64(b[off:])
		}
		return 0
	}
	ti.State = u8(tiState)
	ti.Retransmits = u8(tiRetransmits)
	ti.LastDataSent = u32(tiLastDataSent)
	ti.LastDataRecv = u32(tiLastDataRecv)
	ti.LastAckRecv = u32(tiLastAckRecv)
	ti.RTT = u32(tiRTT)
	ti.RTTVar = u32(tiRTTVar)
	ti.TotalRetrans = u32(tiTotalRetrans)
	ti.BytesAcked = u64(tiBytesAcked)
	ti.BytesReceived = u64(tiBytesRecv)
}

func discard(*Socket) bool { return true }

func nlmAlign(n int) int { return (n + 3) &^ 3 }
func rtaAlign(n int) int { return (n + 3) &^ 3 }

// inetDiagReqV2 is struct inet_diag_req_v2 (include/uapi/linux/inet_diag.h).
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	SPort    [2]byte // big-endian
	DPort    [2]byte
	Src      [16]byte
	Dst      [16]byte
	If       uint32
	Cookie   [2]uint32
}

// nlRequest is a netlink header followed by an inet_diag_req_v2.
type nlRequest struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	Pid   uint32
	Req   inetDiagReqV2
}

func (r *nlRequest) bytes() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
}

// tcpdiagGetSock is TCPDIAG_GETSOCK, the request type of the compat
// interface (include/uapi/linux/inet_diag.h): a dump through it is always of
// family AF_UNSPEC, IPv4 and IPv6 in one walk of the kernel's tables.
const tcpdiagGetSock = 18

// nlCompatRequest is a netlink header followed by the compat struct
// inet_diag_req: family, src_len, dst_len, ext, struct inet_diag_sockid,
// states, dbs.
type nlCompatRequest struct {
	Len    uint32
	Type   uint16
	Flags  uint16
	Seq    uint32
	Pid    uint32
	Family uint8
	SrcLen uint8
	DstLen uint8
	Ext    uint8
	ID     [48]byte // struct inet_diag_sockid, zero: no filter
	States uint32
	DBs    uint32
}

func (r *nlCompatRequest) bytes() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r))
}
