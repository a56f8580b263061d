package sockorigin

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// openOrSkip opens a recorder, skipping where the kernel or the process's
// privileges do not allow one.
func openOrSkip(t testing.TB) *Recorder {
	t.Helper()
	r, err := Open()
	if errors.Is(err, ErrNotSupported) && !cwtest.EBPFExpected() {
		t.Skipf("eBPF socket-origin recorder not available here (needs kernel ≥ 5.15 with BTF and CAP_BPF+CAP_PERFMON or root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// cookieOf returns the socket cookie of c, as sock_diag reports it.
func cookieOf(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	l := c.LocalAddr().(*net.TCPAddr).AddrPort()
	rm := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	var cookie uint64
	err := sockdiag.Dump(sockdiag.Request{States: sockdiag.AllStates}, func(s *sockdiag.Socket) bool {
		if s.Local.Port() == l.Port() && s.Remote.Port() == rm.Port() {
			cookie = s.Cookie
		}
		return true
	})
	if err != nil || cookie == 0 {
		t.Fatalf("no cookie for %v-%v: %v", l, rm, err)
	}
	return cookie
}

// pair dials ln and accepts the connection.
func pair(t *testing.T, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// waitCloseWait waits until c's kernel state is CLOSE_WAIT.
func waitCloseWait(t *testing.T, c net.Conn) {
	t.Helper()
	if err := cwtest.WaitState(c.(*net.TCPConn), uint8(sockdiag.CloseWait), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestRecorderConnectAcceptClose records the sockets this process makes by
// connect and accept, with a user stack each, takes their cookies when they
// enter CLOSE_WAIT, and counts them closed once closed; sockets made before
// the process was traced are not recorded.
func TestRecorderConnectAcceptClose(t *testing.T) {
	r := openOrSkip(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	c0, s0 := pair(t, ln) // not traced yet
	if err := r.AddPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	cA, sA := pair(t, ln) // cA will be the CLOSE_WAIT end: made by connect
	cB, sB := pair(t, ln) // sB will be: made by accept
	s0.Close()
	sA.Close()
	cB.Close()
	waitCloseWait(t, c0)
	waitCloseWait(t, cA)
	waitCloseWait(t, sB)
	want := map[uint64]uint32{cookieOf(t, cA): Connected, cookieOf(t, sB): Accepted}
	untraced := cookieOf(t, c0)

	smp, err := r.Sample()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, so := range smp.Sockets {
		if so.Cookie == untraced {
			t.Errorf("socket %d recorded, made before its process was traced", so.Cookie)
		}
		how, ok := want[so.Cookie]
		if !ok {
			continue
		}
		seen[so.Cookie] = true
		if so.How != how || so.TGID != uint32(os.Getpid()) || so.TID == 0 {
			t.Errorf("socket %d: how %d tgid %d tid %d, want %d %d", so.Cookie, so.How, so.TGID, so.TID, how, os.Getpid())
		}
		if st := smp.Stacks[so.Key.StackID]; len(st) < 3 {
			t.Errorf("socket %d: stack %x, want a user stack", so.Cookie, st)
		}
		if so.Top == [TopWords]uint64{} {
			t.Errorf("socket %d: no words from the user stack pointer", so.Cookie)
		}
		if age := time.Since(so.Created); age < 0 || age > time.Minute {
			t.Errorf("socket %d: created %v ago", so.Cookie, age)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("%d of the 2 traced CLOSE_WAIT sockets recorded with their cookie", len(seen))
	}

	// Closing every end takes each recorded socket to TCP_CLOSE: four
	// sockets (cA, sA, cB, sB), each counted closed once and forgotten.
	cA.Close()
	sB.Close()
	var closed uint64
	for range 500 {
		if smp, err = r.Sample(); err != nil {
			t.Fatal(err)
		}
		closed = 0
		for k, n := range smp.Closed {
			if k.TGID == uint32(os.Getpid()) {
				closed += n
			}
		}
		if closed >= 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if closed != 4 {
		t.Errorf("closed count %d for this process, want 4", closed)
	}
	for _, so := range smp.Sockets {
		if so.TGID == uint32(os.Getpid()) {
			t.Errorf("socket %d (cookie %d) still recorded after every end closed", so.Addr, so.Cookie)
		}
	}
}
