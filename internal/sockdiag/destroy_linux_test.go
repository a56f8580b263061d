//go:build linux

package sockdiag_test

import (
	"errors"
	"net/netip"
	"os"
	"testing"

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
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) for SOCK_DESTROY")
	}
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
