package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// listenOn opens a listening TCP socket with raw syscalls (no keepalive, no
// netpoller: the holders only accept and hold).
func listenOn(ap netip.AddrPort, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %v: %w", ap, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %v: %w", ap, err)
	}
	return fd, nil
}

// boundAddr is the address a socket is bound to (the port the kernel
// picked for port 0).
func boundAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	sa4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("getsockname: not IPv4: %T", sa)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port)), nil
}

// acceptOne accepts one connection, retrying on EINTR.
func acceptOne(lfd int) (int, error) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		return fd, err
	}
}

// dialFrom connects from an explicit source address and port (so the 4-tuple
// is unique for the whole run) with a blocking connect; keepalive stays off.
// linger2 > 0 sets TCP_LINGER2 (seconds an orphaned FIN-WAIT-2 end lives).
func dialFrom(src, dst netip.AddrPort, linger2 int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	fail := func(op string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s %v -> %v: %w", op, src, dst, err)
	}
	// SO_REUSEADDR lets a rerun bind over a TIME-WAIT end of an earlier run.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if linger2 > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_LINGER2, linger2); err != nil {
			return fail("TCP_LINGER2", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(src.Port()), Addr: src.Addr().As4()}); err != nil {
		return fail("bind", err)
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.EINTR), errors.Is(err, unix.EALREADY), errors.Is(err, unix.EINPROGRESS):
		// Interrupted: the handshake goes on in the kernel; wait for it.
		if err := waitState(fd, unix.BPF_TCP_ESTABLISHED, 10*time.Second); err != nil {
			return fail("connect", err)
		}
		return fd, nil
	default:
		return fail("connect", err)
	}
}

// tcpState returns the TCP state of fd from TCP_INFO (unix.BPF_TCP_*).
func tcpState(fd int) (uint8, error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, err
	}
	return ti.State, nil
}

func waitState(fd int, want uint8, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := tcpState(fd)
		if err != nil {
			return err
		}
		if st == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("state %s, want %s after %v", stateName(st), stateName(want), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func stateName(st uint8) string {
	names := map[uint8]string{
		unix.BPF_TCP_ESTABLISHED: "ESTABLISHED", unix.BPF_TCP_SYN_SENT: "SYN-SENT",
		unix.BPF_TCP_SYN_RECV: "SYN-RECV", unix.BPF_TCP_FIN_WAIT1: "FIN-WAIT-1",
		unix.BPF_TCP_FIN_WAIT2: "FIN-WAIT-2", unix.BPF_TCP_TIME_WAIT: "TIME-WAIT",
		unix.BPF_TCP_CLOSE: "CLOSE", unix.BPF_TCP_CLOSE_WAIT: "CLOSE-WAIT",
		unix.BPF_TCP_LAST_ACK: "LAST-ACK", unix.BPF_TCP_LISTEN: "LISTEN",
		unix.BPF_TCP_CLOSING: "CLOSING",
	}
	if n, ok := names[st]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", st)
}

// stdinLines delivers stdin lines on a channel; it is closed at EOF (the
// controller is gone or wants us gone).
func stdinLines() <-chan string {
	ch := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- strings.TrimSpace(sc.Text())
		}
		close(ch)
	}()
	return ch
}

// addr4 builds 127.b.c.d.
func addr4(b, c, d int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(b), byte(c), byte(d)})
}

// clientSource is the source (address, port) of client connection k:
// perAddr consecutive connections share an address 127.octet.x.y with
// distinct ports from basePort.
func clientSource(octet, k, perAddr, basePort int) netip.AddrPort {
	a := k / perAddr
	return netip.AddrPortFrom(addr4(octet, a/250, 1+a%250), uint16(basePort+k%perAddr))
}

// listenAddr is the listening address of holder h: 127.0.x.y from 127.0.0.10.
func listenAddr(h, port int) netip.AddrPort {
	return netip.AddrPortFrom(addr4(0, h/200, 10+h%200), uint16(port))
}
