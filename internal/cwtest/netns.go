package cwtest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/netns"
)

// NewNetNS makes a network namespace with `ip netns add cwtest-<random>`,
// brings its loopback up, and deletes it when the test ends (after the
// holders started later in the test, which cleanups end first). It skips the
// test without root or without ip(8). Start a holder inside it with
// Spec.NetNS.
func NewNetNS(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace with ip netns add")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) (Debian package iproute2) to create a network namespace")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "cwtest-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "not permitted") {
			t.Skipf("cannot create a network namespace here (no CAP_SYS_ADMIN?): ip netns add: %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("cwtest: ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("cwtest: ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("cwtest: bring lo up in %s: %v: %s", name, err, out)
	}
	return name
}

// dialInNetNS connects to addr from a socket made inside the named network
// namespace (the test's client ends of a holder started with Spec.NetNS).
func dialInNetNS(name, network string, addr netip.AddrPort) (*net.TCPConn, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	if network == "tcp6" {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	fd := -1
	err := netns.Do(netns.RunDir+"/"+name, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %v in netns %s: %w", addr, name, err)
	}
	f := os.NewFile(uintptr(fd), "cwtest-client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Probe is what a holder saw when it tried its connections (Holder.Probe).
type Probe struct {
	Read  string // "EOF", "data", "timeout" or the errno name, e.g. "ECONNABORTED"
	Write string // "ok" or the errno name
}

// Probe asks the holder to read from and write one byte to each of its
// accepted and dialled connections, and returns what it saw by the peer's
// address (Conn.Remote). Before a socket is destroyed a CLOSE_WAIT socket
// reads EOF (or its unread data) and writes fine (the peer only half-closed);
// after SOCK_DESTROY the write fails with ECONNABORTED.
func (h *Holder) Probe() map[netip.AddrPort]Probe {
	h.t.Helper()
	h.send("probe")
	out := map[netip.AddrPort]Probe{}
	for {
		f := h.expect("PROBE")
		if len(f) == 2 && f[1] == "done" {
			return out
		}
		if len(f) != 5 {
			h.t.Fatalf("cwtest: holder said %q", strings.Join(f, " "))
		}
		out[netip.MustParseAddrPort(f[2])] = Probe{Read: strings.TrimPrefix(f[3], "read="), Write: strings.TrimPrefix(f[4], "write=")}
	}
}

// serveCommands answers the test's commands on stdin after READY.
func serveCommands(lines <-chan string, held []*net.TCPConn) {
	for line := range lines {
		switch line {
		case "probe":
			w := bufio.NewWriter(os.Stdout)
			for _, c := range held {
				fmt.Fprintf(w, "PROBE %v %v read=%s write=%s\n", addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()), probeRead(c), probeWrite(c))
			}
			fmt.Fprintln(w, "PROBE done")
			w.Flush()
		case "read":
			w := bufio.NewWriter(os.Stdout)
			for _, c := range held {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				b, err := io.ReadAll(c)
				if err != nil {
					fmt.Fprintln(w, "ERROR read:", err)
					break
				}
				fmt.Fprintf(w, "READ %v %v -%x\n", addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()), b)
			}
			fmt.Fprintln(w, "READ done")
			w.Flush()
		}
	}
}

func probeRead(c *net.TCPConn) string {
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [64]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		return "data"
	case err == nil:
		return "none"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF):
		return "EOF"
	}
	return errnoName(err)
}

func probeWrite(c *net.TCPConn) string {
	if _, err := c.Write([]byte{'x'}); err != nil {
		return errnoName(err)
	}
	return "ok"
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}
