package sockdiag_test

import (
	"flag"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

var record = flag.Bool("record", false, "record a real CLOSE_WAIT dump into testdata/ for the fuzz seeds")

func TestMain(m *testing.M) { cwtest.Main(m) }

func TestDumpRealCloseWait(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			h := cwtest.Start(t, cwtest.Spec{Network: network, ReadEOF: 2, Unread: 3, UnreadBytes: 10, NotAccepted: 2})
			time.Sleep(50 * time.Millisecond) // let ages become measurable

			got := map[netip.AddrPort]sockdiag.Socket{}
			err := sockdiag.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Info: true}, func(s *sockdiag.Socket) bool {
				if s.Local.Port() == h.Listen.Port() {
					got[s.Remote] = *s
				}
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(h.Conns) {
				t.Fatalf("dump found %d of the holder's CLOSE_WAIT sockets, want %d", len(got), len(h.Conns))
			}
			for _, c := range h.Conns {
				s, ok := got[c.Remote]
				if !ok {
					t.Errorf("%s socket to %v not in the dump", c.Mode, c.Remote)
					continue
				}
				wantQ := map[string]uint32{"read-eof": 0, "unread": 11, "not-accepted": 1}[c.Mode]
				if s.RecvQ != wantQ {
					t.Errorf("%s socket: Recv-Q %d, want %d", c.Mode, s.RecvQ, wantQ)
				}
				if (s.Inode == 0) != (c.Mode == "not-accepted") {
					t.Errorf("%s socket: inode %d", c.Mode, s.Inode)
				}
				if s.Local.Addr().Is4() != (network == "tcp4") {
					t.Errorf("%s socket: local %v in the wrong family", c.Mode, s.Local)
				}
				age, ok := s.Age()
				if !ok || age < 40*time.Millisecond || age > 30*time.Second {
					t.Errorf("%s socket: age %v, %v; want between 40ms and 30s", c.Mode, age, ok)
				}
				if s.KeepaliveSet() {
					t.Errorf("%s socket: keepalive armed, but the holder never set SO_KEEPALIVE", c.Mode)
				}
			}
		})
	}
}

func TestDumpFiltersInKernel(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	var listeners, cw, other int
	err := sockdiag.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.Listen)}, func(s *sockdiag.Socket) bool {
		if s.State != sockdiag.Listen {
			other++
		}
		if s.Local == h.Listen {
			listeners++
		}
		if s.Local.Port() == h.Listen.Port() && s.State == sockdiag.CloseWait {
			cw++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if listeners != 1 || cw != 0 || other != 0 {
		t.Errorf("LISTEN-only dump: holder listener seen %d times, its CLOSE_WAIT %d times, other states %d; want 1, 0, 0", listeners, cw, other)
	}
}

func TestDumpEarlyStopLeavesConnUsable(t *testing.T) {
	cwtest.Start(t, cwtest.Spec{Unread: 3})
	c, err := sockdiag.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	if err := c.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait)}, func(*sockdiag.Socket) bool { n++; return false }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("callback ran %d times after asking to stop", n)
	}
	m := 0
	if err := c.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait)}, func(*sockdiag.Socket) bool { m++; return true }); err != nil {
		t.Fatalf("second dump on the same Conn: %v", err)
	}
	if m < 3 {
		t.Errorf("second dump saw %d CLOSE_WAIT sockets, want at least the holder's 3", m)
	}
}

// TestProcNetMatchesNetlink checks the fallback against netlink on the same sockets.
func TestProcNetMatchesNetlink(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1, Unread: 2, UnreadBytes: 5})
	h6 := cwtest.Start(t, cwtest.Spec{Network: "tcp6", Unread: 1})
	mine := func(s *sockdiag.Socket) bool {
		return s.Local.Port() == h.Listen.Port() || s.Local.Port() == h6.Listen.Port()
	}
	type key struct{ l, r netip.AddrPort }
	fromNL, fromProc := map[key]sockdiag.Socket{}, map[key]sockdiag.Socket{}
	cw := sockdiag.NewStateSet(sockdiag.CloseWait)
	if err := sockdiag.Dump(sockdiag.Request{States: cw}, func(s *sockdiag.Socket) bool {
		if mine(s) {
			fromNL[key{s.Local, s.Remote}] = *s
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if err := sockdiag.ReadProcNet("/proc", cw, func(s *sockdiag.Socket) bool {
		if mine(s) {
			fromProc[key{s.Local, s.Remote}] = *s
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(fromNL) != 4 || len(fromProc) != 4 {
		t.Fatalf("netlink saw %d, /proc/net saw %d of the 4 holder sockets", len(fromNL), len(fromProc))
	}
	for k, a := range fromNL {
		b := fromProc[k]
		if a.RecvQ != b.RecvQ || a.Inode != b.Inode || a.UID != b.UID || a.State != b.State {
			t.Errorf("%v: netlink {rq %d ino %d uid %d} vs /proc {rq %d ino %d uid %d}", k, a.RecvQ, a.Inode, a.UID, b.RecvQ, b.Inode, b.UID)
		}
	}
}

// TestRecordDump writes a raw dump datagram of real CLOSE_WAIT sockets into
// testdata/ when run with -record; the fuzz target uses it as a seed.
func TestRecordDump(t *testing.T) {
	if !*record {
		t.Skip("run with -record to refresh testdata/dump-closewait.bin")
	}
	cwtest.Start(t, cwtest.Spec{ReadEOF: 1, Unread: 1, Network: "tcp6"})
	b, err := sockdiag.RecordDump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Info: true, Families: []uint8{10}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/dump-closewait.bin", b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDumpBothFamiliesInOneWalk checks that the default dump (one compat
// AF_UNSPEC walk) and a dump per family see the same sockets, with the
// same families, queues and tcp_info.
func TestDumpBothFamiliesInOneWalk(t *testing.T) {
	h4 := cwtest.Start(t, cwtest.Spec{Network: "tcp4", ReadEOF: 2, Unread: 1})
	h6 := cwtest.Start(t, cwtest.Spec{Network: "tcp6", ReadEOF: 1, Unread: 2})
	ours := func(req sockdiag.Request) map[netip.AddrPort]sockdiag.Socket {
		t.Helper()
		got := map[netip.AddrPort]sockdiag.Socket{}
		err := sockdiag.Dump(req, func(s *sockdiag.Socket) bool {
			if s.Local.Port() == h4.Listen.Port() && s.Family == 2 || s.Local.Port() == h6.Listen.Port() && s.Family == 10 {
				got[s.Remote] = *s
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	req := sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Info: true}
	both := ours(req)
	req.Families = []uint8{2, 10} // AF_INET, AF_INET6
	per := ours(req)
	if len(both) != 6 || len(per) != 6 {
		t.Fatalf("holder sockets: %d in one walk, %d per family, want 6 (3 IPv4 + 3 IPv6)", len(both), len(per))
	}
	for remote, p := range per {
		b, ok := both[remote]
		if !ok {
			t.Errorf("%v: missing from the one-walk dump", remote)
			continue
		}
		if b.Family != p.Family || b.Inode != p.Inode || b.Cookie != p.Cookie || b.RecvQ != p.RecvQ || b.HasInfo != p.HasInfo || !b.HasInfo {
			t.Errorf("%v: one walk %+v, per family %+v", remote, b, p)
		}
	}
}
