package cwtest_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// sockets dumps the TCP sockets with local address local (tcp_info included).
func sockets(t *testing.T, local netip.AddrPort) map[netip.AddrPort]sockdiag.Socket {
	t.Helper()
	out := map[netip.AddrPort]sockdiag.Socket{}
	err := sockdiag.Dump(sockdiag.Request{Info: true, Families: []uint8{2}}, func(s *sockdiag.Socket) bool {
		if s.Local == local {
			out[s.Remote] = *s
		}
		return true
	})
	if err != nil {
		t.Fatalf("sock_diag dump: %v", err)
	}
	return out
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestFDExhausted: the server uses every fd its limit allows, its accepted
// connections are CLOSE_WAIT read to EOF, and the rest wait in its accept
// queue in CLOSE_WAIT with no fd.
func TestFDExhausted(t *testing.T) {
	const limit, clients = 64, 100
	s := cwtest.StartFDExhausted(t, limit, clients)
	if !s.EMFILE || s.Accepted+s.Queued != clients || s.Accepted > limit {
		t.Fatalf("accepted %d, queued %d, EMFILE %v", s.Accepted, s.Queued, s.EMFILE)
	}
	// At least the limit: fds opened before the limit was lowered stay open.
	if n := fdCount(t, s.PID); n < limit {
		t.Errorf("server has %d fds open, want all %d its limit allows", n, limit)
	}
	lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", s.PID))
	if err != nil || !strings.Contains(string(lim), "Max open files            64                   64") {
		t.Errorf("limits: %v\n%s", err, lim)
	}
	socks := sockets(t, s.Listen)
	for _, c := range s.Conns {
		k, ok := socks[c.Remote]
		switch {
		case !ok:
			t.Errorf("%s socket from %v not found", c.Mode, c.Remote)
		case k.State != sockdiag.CloseWait:
			t.Errorf("%s socket from %v in %v", c.Mode, c.Remote, k.State)
		case c.Mode == "read-eof" && (k.RecvQ != 0 || k.Inode == 0):
			t.Errorf("accepted socket from %v: Recv-Q %d, inode %d; want read to EOF, with an fd", c.Remote, k.RecvQ, k.Inode)
		case c.Mode == "not-accepted" && (k.RecvQ != 1 || k.Inode != 0):
			t.Errorf("queued socket from %v: Recv-Q %d, inode %d; want only the FIN, no fd", c.Remote, k.RecvQ, k.Inode)
		}
	}
	if l, ok := socks[netip.AddrPortFrom(netip.IPv4Unspecified(), 0)]; !ok || l.State != sockdiag.Listen || int(l.RecvQ) != s.Queued {
		t.Errorf("listener %+v: want %d connections queued", l, s.Queued)
	}
}

// TestGoodbyePool: each pooled connection got the goodbye line with the
// FIN, about the server's idle time after the client's last request.
func TestGoodbyePool(t *testing.T) {
	const conns, idle = 6, time.Second
	p := cwtest.StartGoodbyePool(t, conns, idle)
	if len(p.Conns) != conns || p.Line != cwtest.GoodbyeLine {
		t.Fatalf("%d connections, line %q", len(p.Conns), p.Line)
	}
	for _, c := range p.Conns {
		if c.Remote != p.Server {
			t.Errorf("pooled connection to %v, want %v", c.Remote, p.Server)
		}
		k, ok := sockets(t, c.Local)[p.Server]
		if !ok || k.State != sockdiag.CloseWait || k.RecvQ != uint32(len(p.Line))+1 || !k.HasInfo {
			t.Fatalf("pooled connection %v: %+v; want CLOSE_WAIT with Recv-Q %d", c.Local, k, len(p.Line)+1)
		}
		ti := k.Info
		if d := int64(ti.LastDataRecv) - int64(ti.LastAckRecv); d < -200 || d > 200 {
			t.Errorf("%v: last data received %d ms ago, last ACK %d ms ago: want the goodbye and the FIN together", c.Local, ti.LastDataRecv, ti.LastAckRecv)
		}
		if gap := time.Duration(int64(ti.LastDataSent)-int64(ti.LastDataRecv)) * time.Millisecond; gap < idle-100*time.Millisecond || gap > idle+time.Second {
			t.Errorf("%v: last data sent %d ms ago, received %d ms ago: gap %v, want about %v", c.Local, ti.LastDataSent, ti.LastDataRecv, gap, idle)
		}
	}
}

// TestBlockedWorkers: every connection is CLOSE_WAIT with only the FIN
// unread, and every worker thread sleeps in futex.
func TestBlockedWorkers(t *testing.T) {
	const clients = 30
	b := cwtest.StartBlockedWorkers(t, clients)
	if len(b.Conns) != clients || b.Threads != clients+1 {
		t.Fatalf("%d connections, %d threads", len(b.Conns), b.Threads)
	}
	socks := sockets(t, b.Listen)
	for _, c := range b.Conns {
		if k, ok := socks[c.Remote]; !ok || k.State != sockdiag.CloseWait || k.RecvQ != 1 || k.Inode == 0 {
			t.Errorf("connection from %v: %+v; want CLOSE_WAIT, Recv-Q 1, with an fd", c.Remote, k)
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", b.PID))
	futex := 0
	for _, e := range ents {
		w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", b.PID, e.Name()))
		if strings.Contains(string(w), "futex") {
			futex++
		}
	}
	if len(ents) != clients+1 || futex != clients {
		t.Errorf("%d threads, %d in futex; want %d, %d", len(ents), futex, clients+1, clients)
	}
}
