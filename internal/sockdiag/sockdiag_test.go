package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

func TestStructSizes(t *testing.T) {
	if got := unsafe.Sizeof(inetDiagReqV2{}); got != sizeofInetDiagReq {
		t.Errorf("inet_diag_req_v2 is %#x bytes, want %#x", got, sizeofInetDiagReq)
	}
	if got := unsafe.Sizeof(nlRequest{}); got != sizeofNlMsghdr+sizeofInetDiagReq {
		t.Errorf("request is %d bytes, want %d", got, sizeofNlMsghdr+sizeofInetDiagReq)
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		in   string
		want State
	}{
		{"CLOSE_WAIT", CloseWait}, {"close-wait", CloseWait}, {"Close_Wait", CloseWait},
		{"estab", Established}, {"ESTABLISHED", Established}, {"fin-wait-2", FinWait2},
		{"listen", Listen}, {"time-wait", TimeWait}, {"LAST_ACK", LastAck},
	}
	for _, tt := range tests {
		got, err := ParseState(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseState(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := ParseState("half-open"); err == nil {
		t.Error("ParseState(half-open) succeeded")
	}
	for _, s := range States() {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("round trip %v: %v, %v", s, got, err)
		}
	}
}

// message builds one inet_diag_msg reply datagram part, as the kernel would.
type testMsg struct {
	family       uint8
	state        State
	timer        uint8
	src, dst     netip.AddrPort
	rq, wq, uid  uint32
	inode        uint32
	lastAckRecv  uint32
	withInfo     bool
	shortInfoLen int // truncate tcp_info to this many bytes when > 0
}

func (m testMsg) bytes(seq uint32) []byte {
	var body bytes.Buffer
	hdr := make([]byte, sizeofInetDiagMsg)
	hdr[0], hdr[1], hdr[2] = m.family, uint8(m.state), m.timer
	binary.BigEndian.PutUint16(hdr[4:], m.src.Port())
	binary.BigEndian.PutUint16(hdr[6:], m.dst.Port())
	s16, d16 := m.src.Addr().As16(), m.dst.Addr().As16()
	if m.family == syscall.AF_INET {
		s4, d4 := m.src.Addr().As4(), m.dst.Addr().As4()
		copy(hdr[8:], s4[:])
		copy(hdr[24:], d4[:])
	} else {
		copy(hdr[8:], s16[:])
		copy(hdr[24:], d16[:])
	}
	binary.NativeEndian.PutUint32(hdr[56:], m.rq)
	binary.NativeEndian.PutUint32(hdr[60:], m.wq)
	binary.NativeEndian.PutUint32(hdr[64:], m.uid)
	binary.NativeEndian.PutUint32(hdr[68:], m.inode)
	body.Write(hdr)
	if m.withInfo {
		info := make([]byte, 232)
		info[0] = uint8(m.state)
		binary.NativeEndian.PutUint32(info[tiLastAckRecv:], m.lastAckRecv)
		if m.shortInfoLen > 0 {
			info = info[:m.shortInfoLen]
		}
		attr := make([]byte, 4)
		binary.NativeEndian.PutUint16(attr[0:], uint16(4+len(info)))
		binary.NativeEndian.PutUint16(attr[2:], inetDiagInfo)
		body.Write(attr)
		body.Write(info)
		for body.Len()%4 != 0 {
			body.WriteByte(0)
		}
	}
	return nlmsg(20, seq, body.Bytes())
}

func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, sizeofNlMsghdr, sizeofNlMsghdr+len(payload)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(sizeofNlMsghdr+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseDatagram(t *testing.T) {
	v4 := testMsg{family: syscall.AF_INET, state: CloseWait, src: netip.MustParseAddrPort("127.0.0.1:8080"),
		dst: netip.MustParseAddrPort("127.0.0.2:41000"), rq: 1, uid: 1000, inode: 4242, lastAckRecv: 61000, withInfo: true}
	mapped := testMsg{family: syscall.AF_INET6, state: CloseWait, src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:443"),
		dst: netip.MustParseAddrPort("[::ffff:10.0.0.2]:5000"), inode: 7, withInfo: true, shortInfoLen: 56, lastAckRecv: 5}
	v6 := testMsg{family: syscall.AF_INET6, state: Listen, src: netip.MustParseAddrPort("[::1]:22"), dst: netip.MustParseAddrPort("[::]:0"), rq: 3, wq: 128}
	var dgram []byte
	dgram = append(dgram, v4.bytes(9)...)
	dgram = append(dgram, mapped.bytes(9)...)
	dgram = append(dgram, testMsg{family: syscall.AF_INET, state: CloseWait, src: v4.src, dst: v4.dst}.bytes(8)...) // stale sequence: ignored
	dgram = append(dgram, v6.bytes(9)...)
	dgram = append(dgram, nlmsg(nlmsgDone, 9, []byte{0, 0, 0, 0})...)

	var got []Socket
	done, err := parseDatagram(dgram, 9, &Socket{}, func(s *Socket) bool { got = append(got, *s); return true })
	if err != nil || done != doneEnd {
		t.Fatalf("parseDatagram = %v, %v; want doneEnd, nil", done, err)
	}
	want := []Socket{
		{Family: syscall.AF_INET, State: CloseWait, Local: v4.src, Remote: v4.dst, RecvQ: 1, UID: 1000, Inode: 4242,
			HasInfo: true, Info: TCPInfo{State: uint8(CloseWait), LastAckRecv: 61000}},
		{Family: syscall.AF_INET6, State: CloseWait, Local: netip.MustParseAddrPort("10.0.0.1:443"),
			Remote: netip.MustParseAddrPort("10.0.0.2:5000"), Inode: 7, HasInfo: true,
			Info: TCPInfo{State: uint8(CloseWait), LastAckRecv: 0}}, // tcp_info cut before last_ack_recv
		{Family: syscall.AF_INET6, State: Listen, Local: v6.src, Remote: netip.MustParseAddrPort("[::]:0"), RecvQ: 3, SendQ: 128},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("sockets (-want +got):\n%s", diff)
	}
}

func TestParseDatagramStopAndErrors(t *testing.T) {
	m := testMsg{family: syscall.AF_INET, state: CloseWait, src: netip.MustParseAddrPort("127.0.0.1:1"), dst: netip.MustParseAddrPort("127.0.0.1:2")}
	dgram := append(append(m.bytes(1), m.bytes(1)...), nlmsg(nlmsgDone, 1, []byte{0, 0, 0, 0})...)
	n := 0
	done, err := parseDatagram(dgram, 1, &Socket{}, func(*Socket) bool { n++; return false })
	if err != nil || n != 1 || done != doneEnd {
		t.Errorf("stop before DONE: calls=%d done=%v err=%v; want 1 call, doneEnd", n, done, err)
	}
	n = 0
	done, err = parseDatagram(append(m.bytes(1), m.bytes(1)...), 1, &Socket{}, func(*Socket) bool { n++; return false })
	if err != nil || n != 1 || done != doneStopped {
		t.Errorf("stop: calls=%d done=%v err=%v; want 1 call, doneStopped", n, done, err)
	}

	errMsg := make([]byte, 4)
	eperm := -int32(syscall.EPERM)
	binary.NativeEndian.PutUint32(errMsg, uint32(eperm))
	if _, err := parseDatagram(nlmsg(nlmsgError, 1, errMsg), 1, &Socket{}, discard); !errors.Is(err, syscall.EPERM) {
		t.Errorf("error message: err = %v, want EPERM", err)
	}
	short := m.bytes(1)
	binary.NativeEndian.PutUint32(short[0:], uint32(len(short)+10))
	if _, err := parseDatagram(short, 1, &Socket{}, discard); !errors.Is(err, ErrTruncated) {
		t.Errorf("overlong header: err = %v, want ErrTruncated", err)
	}
	tiny := nlmsg(20, 1, make([]byte, 20))
	if _, err := parseDatagram(tiny, 1, &Socket{}, discard); !errors.Is(err, ErrTruncated) {
		t.Errorf("short inet_diag_msg: err = %v, want ErrTruncated", err)
	}
}

func FuzzParseDatagram(f *testing.F) {
	m := testMsg{family: syscall.AF_INET6, state: CloseWait, src: netip.MustParseAddrPort("[::1]:1"), dst: netip.MustParseAddrPort("[::1]:2"), withInfo: true}
	f.Add(m.bytes(1))
	f.Add(nlmsg(nlmsgDone, 1, []byte{0, 0, 0, 0}))
	if b, err := os.ReadFile("testdata/dump-closewait.bin"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseDatagram(b, 0, &Socket{}, func(*Socket) bool { return true })
	})
}

func TestParseProcNetFixture(t *testing.T) {
	var got []Socket
	err := ReadProcNet("testdata/proc", 0, func(s *Socket) bool { got = append(got, *s); return true })
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Family: syscall.AF_INET, State: Listen, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), SendQ: 4096, Inode: 31337},
		{Family: syscall.AF_INET, State: CloseWait, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:51298"), RecvQ: 1, UID: 1000, Inode: 31338},
		{Family: syscall.AF_INET, State: CloseWait, Local: netip.MustParseAddrPort("10.1.2.3:40000"), Remote: netip.MustParseAddrPort("192.168.1.10:5432"), UID: 1000, Inode: 31339, Timer: TimerKeepalive},
		{Family: syscall.AF_INET, State: Established, Local: netip.MustParseAddrPort("127.0.0.1:22"), Remote: netip.MustParseAddrPort("127.0.0.1:60000"), SendQ: 0x24, Timer: TimerRetrans, Inode: 31340},
		{Family: syscall.AF_INET6, State: CloseWait, Local: netip.MustParseAddrPort("[::1]:9000"), Remote: netip.MustParseAddrPort("[::1]:45678"), RecvQ: 0x0b, UID: 65534, Inode: 31341},
		{Family: syscall.AF_INET6, State: CloseWait, Local: netip.MustParseAddrPort("127.0.0.1:9001"), Remote: netip.MustParseAddrPort("127.0.0.5:45679"), Inode: 0},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("sockets (-want +got):\n%s", diff)
	}

	var cw int
	if err := ReadProcNet("testdata/proc", NewStateSet(CloseWait), func(*Socket) bool { cw++; return true }); err != nil || cw != 4 {
		t.Errorf("CLOSE_WAIT filter: %d sockets, %v; want 4", cw, err)
	}
}

func TestParseProcNetErrors(t *testing.T) {
	tests := []struct{ name, line string }{
		{"short", "0: 0100007F:1F90 00000000:0000 0A"},
		{"bad state", "0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1 1"},
		{"bad addr", "0: 0100007:1F90 00000000:0000 08 00000000:00000000 00:00000000 00000000 0 0 1 1"},
		{"bad inode", "0: 0100007F:1F90 00000000:0000 08 00000000:00000000 00:00000000 00000000 0 0 x 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewBufferString("header\n" + tt.line + "\n")
			_, err := ParseProcNet(r, syscall.AF_INET, 0, func(*Socket) bool { return true })
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte("line 2")) {
				t.Errorf("err = %v, want an error naming line 2", err)
			}
		})
	}
}
