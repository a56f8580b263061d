package peek

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

func TestPrintable(t *testing.T) {
	long := strings.Repeat("a", MaxText+10)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"goodbye line", []byte("FATAL: terminating connection due to idle-session timeout\n"), `FATAL: terminating connection due to idle-session timeout\n`},
		{"crlf and tab", []byte("421 4.4.2 closing\r\n\tx"), `421 4.4.2 closing\r\n\tx`},
		{"binary", []byte{0, 1, 'E', 0x7f, 0xff}, `\x00\x01E\x7f\xff`},
		{"backslash", []byte(`a\xb`), `a\\xb`},
		{"utf-8 kept", []byte("Verbindung beendet: Zeitüberschreitung ✓"), "Verbindung beendet: Zeitüberschreitung ✓"},
		{"C1 control and bidi override escaped", []byte("a\u0085b\u202ec"), `a\xc2\x85b\xe2\x80\xaec`},
		{"postgres error message frame", []byte("E\x00\x00\x00\x10SFATAL\x00"), `E\x00\x00\x00\x10SFATAL\x00`},
		{"cut at MaxText", []byte(long), strings.Repeat("a", MaxText) + "…"},
		{"rune cut by MaxText", []byte(strings.Repeat("a", MaxText-1) + "é"), strings.Repeat("a", MaxText-1) + `\xc3…`},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Printable(tt.in); got != tt.want {
				t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// held is one CLOSE_WAIT socket of a holder, as the kernel shows it.
type held struct {
	fd    int
	inode uint64
	recvQ uint32
	state sockdiag.State
}

// lookup finds the holder's socket to the peer port in a netlink dump and
// its fd in /proc.
func lookup(t *testing.T, pid int, local, remote netip.AddrPort) held {
	t.Helper()
	var h held
	found := false
	err := sockdiag.Dump(sockdiag.Request{}, func(s *sockdiag.Socket) bool {
		if s.Local == local && s.Remote == remote {
			h.inode, h.recvQ, h.state, found = s.Inode, s.RecvQ, s.State, true
			return false
		}
		return true
	})
	if err != nil {
		t.Fatalf("sock_diag dump: %v", err)
	}
	if !found {
		t.Fatalf("socket %v -> %v not found", local, remote)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("socket:[%d]", h.inode)
	for _, e := range ents {
		if l, _ := os.Readlink(dir + "/" + e.Name()); l == want {
			h.fd, _ = strconv.Atoi(e.Name())
			return h
		}
	}
	t.Fatalf("process %d holds no fd for inode %d", pid, h.inode)
	return h
}

// skipWithout skips the test when this process may not duplicate other
// processes' fds (no ptrace permission, or a kernel before 5.6).
func skipWithout(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrPermission) || errors.Is(err, ErrNotSupported) {
		t.Skipf("cannot peek here: %v", err)
	}
}

// TestUnreadLeavesSocketAsItWas peeks at a CLOSE_WAIT socket a holder
// never read, twice, and checks that the holder then reads the very same
// bytes and that the socket kept its state and Recv-Q meanwhile.
func TestUnreadLeavesSocketAsItWas(t *testing.T) {
	line := []byte("FATAL: terminating connection due to idle-session timeout\n")
	h := cwtest.Start(t, cwtest.Spec{Unread: 2, UnreadData: line})
	c := h.Conns[0]
	before := lookup(t, h.PID, c.Local, c.Remote)
	if before.state != sockdiag.CloseWait || before.recvQ != uint32(len(line))+1 {
		t.Fatalf("holder's socket is %v with Recv-Q %d, want CLOSE_WAIT with %d", before.state, before.recvQ, len(line)+1)
	}
	ownFDs := countFDs(t)
	for i := 0; i < 2; i++ {
		got, err := Unread(h.PID, before.fd, before.inode, 4096)
		skipWithout(t, err)
		if err != nil {
			t.Fatalf("peek %d: %v", i+1, err)
		}
		if !bytes.Equal(got, line) {
			t.Fatalf("peek %d gave %q, want %q", i+1, got, line)
		}
	}
	// A shorter peek gives the first bytes.
	if got, err := Unread(h.PID, before.fd, before.inode, 6); err != nil || string(got) != "FATAL:" {
		t.Errorf("peek of 6 bytes: %q, %v", got, err)
	}
	after := lookup(t, h.PID, c.Local, c.Remote)
	if after != before {
		t.Errorf("after peeking: %+v, before: %+v", after, before)
	}
	if n := countFDs(t); n != ownFDs {
		t.Errorf("this process has %d fds after peeking, %d before: a duplicate was left open", n, ownFDs)
	}
	read := h.ReadAll()
	if got := read[c.Remote.Port()]; !bytes.Equal(got, line) {
		t.Errorf("the holder read %q after the peeks, want %q", got, line)
	}
	if got := read[h.Conns[1].Remote.Port()]; !bytes.Equal(got, line) {
		t.Errorf("the holder read %q on the socket not peeked, want %q", got, line)
	}
	// Read to EOF, the socket stays in CLOSE_WAIT (the holder does not close it) with Recv-Q 0.
	if end := lookup(t, h.PID, c.Local, c.Remote); end.state != sockdiag.CloseWait || end.recvQ != 0 {
		t.Errorf("after the holder read: %+v, want CLOSE_WAIT with Recv-Q 0", end)
	}
	// Now only EOF remains: a peek gives nothing.
	if got, err := Unread(h.PID, before.fd, before.inode, 100); err != nil || len(got) != 0 {
		t.Errorf("peek after the holder read: %q, %v; want nothing", got, err)
	}
}

// TestUnreadFINOnly peeks at a socket whose only unread byte is the FIN.
func TestUnreadFINOnly(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	s := lookup(t, h.PID, h.Conns[0].Local, h.Conns[0].Remote)
	got, err := Unread(h.PID, s.fd, s.inode, 100)
	skipWithout(t, err)
	if err != nil || len(got) != 0 {
		t.Errorf("peek: %q, %v; want nothing", got, err)
	}
	if after := lookup(t, h.PID, h.Conns[0].Local, h.Conns[0].Remote); after != s || s.recvQ != 1 {
		t.Errorf("after peeking: %+v, before: %+v", after, s)
	}
}

func TestUnreadErrors(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1, UnreadBytes: 10})
	s := lookup(t, h.PID, h.Conns[0].Local, h.Conns[0].Remote)
	if _, err := Unread(h.PID, s.fd, s.inode, 1); err != nil {
		skipWithout(t, err)
		t.Fatalf("peek: %v", err)
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		pid, fd  int
		inode    uint64
		sentinel error  // nil: none of the sentinels
		words    string // in the message
	}{
		{"exited process", exited.Process.Pid, 3, 0, ErrGone, "process or fd gone"},
		{"closed fd", h.PID, 999, 0, ErrGone, "fd 999"},
		{"fd reused by another socket", h.PID, s.fd, s.inode + 1, ErrGone, "not socket"},
		{"not a socket", h.PID, 0, 0, nil, "is not a socket"},
		{"bad pid", -1, 3, 0, nil, "not a process id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unread(tt.pid, tt.fd, tt.inode, 10)
			if err == nil {
				t.Fatal("no error")
			}
			for _, e := range []error{ErrGone, ErrPermission, ErrNotSupported} {
				if errors.Is(err, e) != (e == tt.sentinel) {
					t.Errorf("error %q: errors.Is(%q) = %v", err, e, !(e == tt.sentinel))
				}
			}
			if !strings.Contains(err.Error(), tt.words) || !strings.HasPrefix(err.Error(), "peek: ") {
				t.Errorf("error %q lacks %q", err, tt.words)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		want  error
	}{
		{unix.EPERM, ErrPermission},
		{unix.EACCES, ErrPermission},
		{unix.ENOSYS, ErrNotSupported},
		{unix.ESRCH, ErrGone},
		{unix.EBADF, ErrGone},
		{unix.EMFILE, nil},
	}
	for _, tt := range tests {
		err := classify(tt.errno)
		for _, e := range []error{ErrGone, ErrPermission, ErrNotSupported} {
			if errors.Is(err, e) != (e == tt.want) {
				t.Errorf("classify(%v) = %q: errors.Is(%q) = %v", tt.errno, err, e, e != tt.want)
			}
		}
		if !errors.Is(err, tt.errno) {
			t.Errorf("classify(%v) = %q hides the errno", tt.errno, err)
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
