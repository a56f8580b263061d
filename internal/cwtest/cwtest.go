// Package cwtest starts real processes that hold real CLOSE_WAIT sockets on
// loopback, for tests.
//
// A test package that uses it calls [Main] from its TestMain; [Start] then
// re-executes the test binary as a "holder" child process that listens on a
// loopback port and accepts connections from the test, which half-closes
// them (shutdown(SHUT_WR)), so the holder's ends move to CLOSE_WAIT while the
// test's ends stay in FIN_WAIT2 for as long as the test keeps them. Each wait
// is on kernel state (the client's TCP_INFO reaching FIN_WAIT2, the holder's
// reaching CLOSE_WAIT), never on a sleep.
//
// Holders can read some connections to EOF (Recv-Q 0), leave others unread
// (Recv-Q 1, or more with data), leave connections in the accept queue, share
// their sockets with a second process, dial out to a server that closes, run
// under a low fd limit or as another user, or leak one socket per interval.
// Every process is ended by its pid when the test ends.
package cwtest

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const envRole = "CLOSEWAIT_CWTEST_ROLE"
const envSpec = "CLOSEWAIT_CWTEST_SPEC"

// Main runs the child roles of this package when the test binary was started
// as one, and the tests otherwise, then the cleanups (in order) before it
// exits. Call it from TestMain; a TestMain's own deferred calls would never
// run, since Main ends the process.
func Main(m *testing.M, cleanups ...func()) {
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runChild(role))
	}
	code := m.Run()
	if copyPath != "" {
		os.RemoveAll(filepath.Dir(copyPath))
	}
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

// Spec describes what a holder process holds.
type Spec struct {
	// Network is "tcp4" (127.0.0.1, the default) or "tcp6" (::1).
	Network string
	// ReadEOF connections are read by the holder until EOF and kept open: Recv-Q 0.
	ReadEOF int
	// Unread connections are accepted and never read: Recv-Q 1 (the FIN) plus UnreadBytes.
	Unread int
	// UnreadBytes is how much data the test sends on each unread connection before its FIN.
	UnreadBytes int
	// UnreadData, when set, is what the test sends on each unread
	// connection before its FIN, instead of UnreadBytes zero bytes.
	UnreadData []byte
	// NotAccepted connections are left in the listener's accept queue: the
	// holder stops accepting after the others, and they reach CLOSE_WAIT with no fd.
	NotAccepted int
	// Share starts a second process, a child of the holder, that inherits
	// every accepted connection (the fork case).
	Share bool
	// FDLimit, when nonzero, is the holder's RLIMIT_NOFILE soft limit.
	FDLimit uint64
	// KeepAlive sets SO_KEEPALIVE on accepted connections (off otherwise, so
	// that tcp_info ages are not reset by probes).
	KeepAlive bool
	// DialTo makes the holder dial this address Dial times and never read:
	// when the server there closes, the holder's ends are outbound CLOSE_WAIT.
	DialTo string
	// Dial is the number of outbound connections to DialTo.
	Dial int
	// LeakEvery makes the holder leak one CLOSE_WAIT socket (to itself) per
	// interval, up to LeakMax sockets, starting after the others are set up.
	LeakEvery time.Duration
	// LeakMax bounds the sockets leaked by LeakEvery; zero means 1000.
	LeakMax int
	// UID and GID, when UID is nonzero, run the holder as that user (needs root).
	UID, GID uint32
	// Exec, when set, is the program to run instead of the test binary; the
	// holder role is then not available (used by tests of external runtimes).
	Exec []string
	// Args are extra arguments on the holder's command line, never read by
	// it: what a test wants to find (or not) in the reported cmdline.
	Args []string
	// NetNS, when set, is the name of a network namespace under /run/netns
	// (see NewNetNS): the holder runs inside it (`ip netns exec`, same pid)
	// and the test's client ends are made inside it too. Needs root and ip(8);
	// not combined with UID or DialTo.
	NetNS string
}

// Conn is one CLOSE_WAIT socket of a holder, as seen from the holder.
type Conn struct {
	Local  netip.AddrPort // the holder's end
	Remote netip.AddrPort // the peer's end
	Mode   string         // "read-eof", "unread", "not-accepted", "dial"
}

// Holder is a running holder process.
type Holder struct {
	PID       int            // the holder
	SharerPID int            // the process sharing its sockets (Spec.Share), else 0
	Listen    netip.AddrPort // the holder's listening address
	Conns     []Conn         // the holder's CLOSE_WAIT sockets, in the order they were made

	t       testing.TB
	cmd     *exec.Cmd
	stdin   *os.File
	lines   chan string
	clients []*net.TCPConn
}

// Start starts a holder process and drives its connections into CLOSE_WAIT.
// It fails the test if that does not happen within a few seconds. The holder,
// its sharer and the test's client ends are closed when the test ends.
func Start(t testing.TB, spec Spec) *Holder {
	t.Helper()
	if spec.Network == "" {
		spec.Network = "tcp4"
	}
	b, _ := json.Marshal(spec)
	self := os.Args[0]
	if spec.UID != 0 {
		self = sharedCopy(t)
	}
	cmd := exec.Command(self, append([]string{"-test.run=^$"}, spec.Args...)...)
	if spec.NetNS != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", spec.NetNS, self, "-test.run=^$"}, spec.Args...)...) // ip execs in place: same pid
	}
	cmd.Env = append(os.Environ(), envRole+"=holder", envSpec+"="+string(b))
	if spec.UID != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: spec.UID, Gid: spec.GID}}
	}
	h := launch(t, cmd)
	f := h.expect("LISTEN")
	h.Listen = netip.MustParseAddrPort(f[1])
	for i := 0; i < spec.ReadEOF+spec.Unread+spec.NotAccepted; i++ {
		mode := "read-eof"
		switch {
		case i >= spec.ReadEOF+spec.Unread:
			mode = "not-accepted"
		case i >= spec.ReadEOF:
			mode = "unread"
		}
		c := h.dialHalfClose(spec, mode)
		conn := Conn{Local: h.Listen, Remote: addrPort(c.LocalAddr()), Mode: mode}
		if mode != "not-accepted" {
			f := h.expect("CONN")
			conn.Local, conn.Remote = netip.MustParseAddrPort(f[1]), netip.MustParseAddrPort(f[2])
		}
		h.Conns = append(h.Conns, conn)
	}
	if spec.ReadEOF+spec.Unread+spec.NotAccepted > 0 {
		h.send("accepted")
	}
	for i := 0; i < spec.Dial; i++ {
		f := h.expect("DIAL")
		h.Conns = append(h.Conns, Conn{Local: netip.MustParseAddrPort(f[1]), Remote: netip.MustParseAddrPort(f[2]), Mode: "dial"})
	}
	if spec.Share {
		f := h.expect("SHARER")
		h.SharerPID, _ = strconv.Atoi(f[1])
	}
	h.expect("READY")
	return h
}

// launch starts cmd as a child that speaks the holder's line protocol:
// commands on its stdin (closed when the test ends, so that it exits),
// one reply per line on its stdout. It is ended by its pid when the test ends.
func launch(t testing.TB, cmd *exec.Cmd) *Holder {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("cwtest: pipe: %v", err)
	}
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("cwtest: stdout pipe: %v", err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("cwtest: start %s: %v", cmd.Path, err)
	}
	pr.Close()
	h := &Holder{PID: cmd.Process.Pid, t: t, cmd: cmd, stdin: pw, lines: make(chan string, 64)}
	t.Cleanup(h.Stop)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	return h
}

// dialHalfClose connects to the holder, sends data for unread connections,
// half-closes, and waits until the kernel has acknowledged the FIN (client
// in FIN_WAIT2), which means the holder's end is in CLOSE_WAIT.
func (h *Holder) dialHalfClose(spec Spec, mode string) *net.TCPConn {
	h.t.Helper()
	var tc *net.TCPConn
	if spec.NetNS != "" {
		c, err := dialInNetNS(spec.NetNS, spec.Network, h.Listen)
		if err != nil {
			h.t.Fatalf("cwtest: dial holder in netns %s: %v", spec.NetNS, err)
		}
		tc = c
	} else {
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		c, err := d.Dial(spec.Network, h.Listen.String())
		if err != nil {
			h.t.Fatalf("cwtest: dial holder: %v", err)
		}
		tc = c.(*net.TCPConn)
	}
	h.clients = append(h.clients, tc)
	if data := spec.UnreadData; mode == "unread" && (len(data) > 0 || spec.UnreadBytes > 0) {
		if len(data) == 0 {
			data = make([]byte, spec.UnreadBytes)
		}
		if _, err := tc.Write(data); err != nil {
			h.t.Fatalf("cwtest: write: %v", err)
		}
	}
	if err := tc.CloseWrite(); err != nil {
		h.t.Fatalf("cwtest: shutdown: %v", err)
	}
	if err := WaitState(tc, unix.BPF_TCP_FIN_WAIT2, 5*time.Second); err != nil {
		h.t.Fatalf("cwtest: client end: %v", err)
	}
	return tc
}

// WaitState polls the connection's TCP_INFO until it reaches state (a
// unix.BPF_TCP_* value) or timeout passes.
func WaitState(c syscall.Conn, state uint8, timeout time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var st uint8
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			var ti *unix.TCPInfo
			ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if ti != nil {
				st = ti.State
			}
		}); err != nil {
			return err
		}
		if gerr != nil {
			return gerr
		}
		if st == state {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("TCP state %d after %v, want %d", st, timeout, state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *Holder) expect(word string) []string {
	h.t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			h.t.Fatalf("cwtest: holder %d exited before %s", h.PID, word)
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != word {
			if len(f) > 0 && f[0] == "ERROR" {
				h.t.Fatalf("cwtest: holder: %s", line)
			}
			h.t.Fatalf("cwtest: holder said %q, want %s", line, word)
		}
		return f
	case <-time.After(10 * time.Second):
		h.t.Fatalf("cwtest: holder %d did not say %s within 10s", h.PID, word)
	}
	return nil
}

// ReadAll makes the holder read each of its connections to EOF, as its
// application would, and returns what it read from each, by the peer's port.
func (h *Holder) ReadAll() map[uint16][]byte {
	h.t.Helper()
	h.send("read")
	out := map[uint16][]byte{}
	for {
		f := h.expect("READ")
		if len(f) == 2 && f[1] == "done" {
			return out
		}
		if len(f) != 4 {
			h.t.Fatalf("cwtest: holder said %q", strings.Join(f, " "))
		}
		b, err := hex.DecodeString(strings.TrimPrefix(f[3], "-"))
		if err != nil {
			h.t.Fatalf("cwtest: holder said %q: %v", strings.Join(f, " "), err)
		}
		out[netip.MustParseAddrPort(f[2]).Port()] = b
	}
}

// Next waits for the next line the holder prints (e.g. "LEAK local remote"
// for each socket leaked by Spec.LeakEvery) and returns its fields.
func (h *Holder) Next(word string) []string { h.t.Helper(); return h.expect(word) }

func (h *Holder) send(msg string) {
	fmt.Fprintln(h.stdin, msg)
}

// Stop ends the holder and its sharer by pid and closes the test's client
// ends. It is safe to call more than once.
func (h *Holder) Stop() {
	if h.cmd == nil {
		return
	}
	if h.SharerPID > 0 {
		_ = syscall.Kill(h.SharerPID, syscall.SIGKILL)
	}
	_ = syscall.Kill(h.PID, syscall.SIGKILL)
	_ = h.cmd.Wait()
	h.stdin.Close()
	for _, c := range h.clients {
		c.Close()
	}
	h.cmd = nil
}

// Exited reports whether the holder process has exited (after Stop, always).
func (h *Holder) Exited() bool { return h.cmd == nil }

// RemotePorts returns the set of peer ports of the holder's sockets of the
// given mode ("" for all), which identify them uniquely on loopback.
func (h *Holder) RemotePorts(mode string) map[uint16]bool {
	m := map[uint16]bool{}
	for _, c := range h.Conns {
		if mode == "" || c.Mode == mode {
			m[c.Remote.Port()] = true
		}
	}
	return m
}

var (
	copyOnce sync.Once
	copyPath string
	copyErr  error
)

// sharedCopy copies the test binary to a directory any user may read and
// execute, for holders that run as another user (Go's build directory is
// private to its owner). The copy lives until the test binary exits.
func sharedCopy(t testing.TB) string {
	copyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cwtest-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			copyErr = err
			return
		}
		src, err := os.ReadFile(os.Args[0])
		if err != nil {
			copyErr = err
			return
		}
		copyPath = filepath.Join(dir, filepath.Base(os.Args[0]))
		copyErr = os.WriteFile(copyPath, src, 0o755)
	})
	if copyErr != nil {
		t.Fatalf("cwtest: copy test binary for another user: %v", copyErr)
	}
	return copyPath
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// EBPFExpected reports whether this machine should load closewait's eBPF
// programs: root on a kernel with BTF (CI is one). Tests skip on "not
// supported" only when it is false, so that a wrong layout or program
// cannot hide behind a skip.
func EBPFExpected() bool {
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	return err == nil && os.Geteuid() == 0
}
