//go:build linux

package sockdiag_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

// holderSockets dumps the CLOSE_WAIT sockets on the holder's listening port.
func holderSockets(t *testing.T, c *sockdiag.Conn, h *cwtest.Holder) map[netip.AddrPort]sockdiag.Socket {
	t.Helper()
	got := map[netip.AddrPort]sockdiag.Socket{}
	err := c.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait)}, func(s *sockdiag.Socket) bool {
		if s.Local.Port() == h.Listen.Port() {
			got[s.Remote] = *s
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDestroyRemovesSocketsFromTheKernel(t *testing.T) {
	cwtest.NeedRoot(t, "CAP_NET_ADMIN for SOCK_DESTROY")
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			h := cwtest.Start(t, cwtest.Spec{Network: network, ReadEOF: 1, Unread: 1, UnreadBytes: 5, NotAccepted: 1})
			c, err := sockdiag.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := holderSockets(t, c, h)
			if len(before) != 3 {
				t.Fatalf("holder has %d CLOSE_WAIT sockets, want 3", len(before))
			}
			// A wrong cookie names another socket: the kernel must refuse it.
			for _, s := range before {
				wrong := s
				wrong.Cookie ^= 0x5a5a
				if err := c.Destroy(&wrong); !errors.Is(err, sockdiag.ErrGone) {
					t.Errorf("destroy with a wrong cookie: %v, want ErrGone", err)
				}
				break
			}
			if n := len(holderSockets(t, c, h)); n != 3 {
				t.Fatalf("after wrong-cookie destroys %d sockets left, want 3", n)
			}
			for _, s := range before {
				if err := c.Destroy(&s); err != nil {
					t.Errorf("destroy %v -> %v (inode %d): %v", s.Local, s.Remote, s.Inode, err)
				}
			}
			if left := holderSockets(t, c, h); len(left) != 0 {
				t.Errorf("%d sockets still in CLOSE_WAIT after destroy: %v", len(left), left)
			}
			for _, s := range before {
				if err := c.Destroy(&s); !errors.Is(err, sockdiag.ErrGone) || !errors.Is(err, os.ErrNotExist) {
					t.Errorf("second destroy of %v: %v, want ErrGone (ENOENT)", s.Remote, err)
				}
			}
			for remote, p := range h.Probe() {
				if p.Write != "ECONNABORTED" || p.Read != "EOF" && p.Read != "data" {
					t.Errorf("holder's socket to %v after destroy: read %s, write %s; want EOF or data, ECONNABORTED", remote, p.Read, p.Write)
				}
			}
		})
	}
}

// TestDestroyDualStackMappedIPv4 destroys an AF_INET6 socket whose peer is
// IPv4 (dumped as ::ffff:127.0.0.1, normalised to 127.0.0.1): the request
// must carry the addresses IPv4-mapped, as the kernel keeps them.
func TestDestroyDualStackMappedIPv4(t *testing.T) {
	cwtest.NeedRoot(t, "CAP_NET_ADMIN for SOCK_DESTROY")
	ln, err := net.Listen("tcp", "[::]:0") // dual-stack
	if err != nil {
		t.Skipf("no dual-stack IPv6 listener here: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	client, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := cwtest.WaitState(server.(*net.TCPConn), unix.BPF_TCP_CLOSE_WAIT, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := sockdiag.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	find := func() (sockdiag.Socket, bool) {
		var found sockdiag.Socket
		ok := false
		err := c.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Families: []uint8{unix.AF_INET6}}, func(s *sockdiag.Socket) bool {
			if int(s.Local.Port()) == port {
				found, ok = *s, true
				return false
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return found, ok
	}
	s, ok := find()
	if !ok {
		t.Fatal("dual-stack CLOSE_WAIT socket not in the AF_INET6 dump")
	}
	if s.Family != unix.AF_INET6 || !s.Local.Addr().Is4() {
		t.Fatalf("socket family %d local %v: want AF_INET6 with a normalised IPv4 address", s.Family, s.Local)
	}
	if err := c.Destroy(&s); err != nil {
		t.Fatalf("destroy %v -> %v: %v", s.Local, s.Remote, err)
	}
	if _, ok := find(); ok {
		t.Error("dual-stack socket still in CLOSE_WAIT after destroy")
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, unix.ECONNABORTED) {
		t.Errorf("write after destroy: %v, want ECONNABORTED", err)
	}
}
