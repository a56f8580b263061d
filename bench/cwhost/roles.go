package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Child roles. Each prints "ERROR ..." and exits non-zero on failure, and
// exits when its stdin reaches EOF (the controller is gone). The controller
// also sets Pdeathsig, so no child outlives it.

// runHolder listens, accepts -n connections and holds them. Commands on
// stdin: DRAIN (read the FIN of every -drain-every'th socket, so that it
// shows Recv-Q 0 instead of 1), CHECK (count the held sockets per state).
func runHolder(args []string) int {
	fs := flag.NewFlagSet("holder", flag.ExitOnError)
	listen := fs.String("listen", "", "listen address")
	n := fs.Int("n", 0, "connections to accept")
	drainEvery := fs.Int("drain-every", 2, "read to EOF every k-th socket on DRAIN (0: none)")
	fs.Parse(args)
	lfd, ap, err := listenAt(*listen)
	if err != nil {
		return childErr(err)
	}
	lines := stdinLines()
	fmt.Println("LISTEN", ap)
	fds := make([]int, 0, *n)
	for len(fds) < *n {
		fd, err := acceptOne(lfd)
		if err != nil {
			return childErr(fmt.Errorf("accept after %d: %w", len(fds), err))
		}
		fds = append(fds, fd)
	}
	fmt.Println("ACCEPTED", len(fds))
	for cmd := range lines {
		switch cmd {
		case "DRAIN":
			eof := 0
			if *drainEvery > 0 {
				buf := make([]byte, 64)
				for i := 0; i < len(fds); i += *drainEvery {
					for {
						m, _, err := unix.Recvfrom(fds[i], buf, unix.MSG_DONTWAIT)
						if err == unix.EINTR {
							continue
						}
						if err == nil && m == 0 {
							eof++
						}
						if err != nil || m == 0 {
							break
						}
					}
				}
			}
			fmt.Println("DRAINED", eof)
		case "CHECK":
			count := map[uint8]int{}
			for _, fd := range fds {
				st, err := tcpState(fd)
				if err != nil {
					return childErr(err)
				}
				count[st]++
			}
			cw := count[unix.BPF_TCP_CLOSE_WAIT]
			fmt.Printf("CHECK closewait=%d other=%d\n", cw, len(fds)-cw)
		}
	}
	return 0
}

// runClient opens -n connections to -dst from unique source (address, port)
// pairs, says CONNECTED, and on GO half-closes them all (shutdown SHUT_WR),
// waits until each is FIN-WAIT-2 (the server end is then CLOSE-WAIT), closes
// them and exits. The orphaned FIN-WAIT-2 ends expire after tcp_fin_timeout
// (or -linger2); the server ends stay CLOSE-WAIT as nothing is ever sent.
func runClient(args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	dst := fs.String("dst", "", "server address")
	n := fs.Int("n", 0, "connections")
	first := fs.Int("first", 0, "global index of the first connection (picks source address/port)")
	octet := fs.Int("octet", 20, "second octet of the source addresses 127.OCTET.x.y")
	perAddr := fs.Int("per-addr", 1000, "connections per source address")
	basePort := fs.Int("base-port", 20000, "first source port")
	linger2 := fs.Int("linger2", 0, "TCP_LINGER2 seconds for the orphaned ends (0: tcp_fin_timeout)")
	fs.Parse(args)
	dap, err := netip.ParseAddrPort(*dst)
	if err != nil {
		return childErr(err)
	}
	lines := stdinLines()
	fds := make([]int, 0, *n)
	for i := 0; i < *n; i++ {
		src := clientSource(*octet, *first+i, *perAddr, *basePort)
		fd, err := dialFrom(src, dap, *linger2)
		if err != nil {
			return childErr(fmt.Errorf("connection %d: %w", i, err))
		}
		fds = append(fds, fd)
	}
	fmt.Println("CONNECTED", len(fds))
	if cmd, ok := <-lines; !ok || cmd != "GO" {
		return 0
	}
	for _, fd := range fds {
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return childErr(fmt.Errorf("shutdown: %w", err))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, fd := range fds {
		if err := waitState(fd, unix.BPF_TCP_FIN_WAIT2, time.Until(deadline)); err != nil {
			return childErr(fmt.Errorf("waiting for FIN-WAIT-2: %w", err))
		}
	}
	fmt.Println("FINWAIT2", len(fds))
	for _, fd := range fds {
		unix.Close(fd)
	}
	fmt.Println("CLOSED", len(fds))
	return 0
}

// runEstab makes -n ESTABLISHED pairs inside one process (both ends held).
func runEstab(args []string) int {
	fs := flag.NewFlagSet("estab", flag.ExitOnError)
	listen := fs.String("listen", "", "listen address")
	n := fs.Int("n", 1000, "pairs")
	octet := fs.Int("octet", 20, "second octet of the source addresses")
	fs.Parse(args)
	lfd, ap, err := listenAt(*listen)
	if err != nil {
		return childErr(err)
	}
	lines := stdinLines()
	var fds []int
	for done := 0; done < *n; {
		batch := min(*n-done, 1000)
		for i := 0; i < batch; i++ {
			// 127.OCTET.255.x: apart from the CLOSE_WAIT clients' addresses.
			k := done + i
			src := netip.AddrPortFrom(addr4(*octet, 255, 1+k/1000%250), uint16(20000+k%1000))
			fd, err := dialFrom(src, ap, 0)
			if err != nil {
				return childErr(err)
			}
			fds = append(fds, fd)
		}
		for i := 0; i < batch; i++ {
			fd, err := acceptOne(lfd)
			if err != nil {
				return childErr(err)
			}
			fds = append(fds, fd)
		}
		done += batch
	}
	fmt.Println("READY", len(fds)/2)
	for range lines {
	}
	return 0
}

// runIdle opens /dev/null -fds times and waits.
func runIdle(args []string) int {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	n := fs.Int("fds", 200, "fds to hold")
	fs.Parse(args)
	lines := stdinLines()
	for i := 0; i < *n; i++ {
		if _, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return childErr(err)
		}
	}
	fmt.Println("READY")
	for range lines {
	}
	return 0
}

func childErr(err error) int {
	fmt.Println("ERROR", err)
	fmt.Fprintln(os.Stderr, "cwhost child:", err)
	return 2
}

// listenAt listens on the address given as -listen (port 0: the kernel
// picks) and returns the socket and the address it is bound to.
func listenAt(addr string) (int, netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, ap, err
	}
	lfd, err := listenOn(ap, 4096)
	if err != nil {
		return -1, ap, err
	}
	if ap, err = boundAddr(lfd); err != nil {
		return -1, ap, err
	}
	return lfd, ap, nil
}
