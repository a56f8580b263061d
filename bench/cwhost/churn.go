package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The churn role keeps sockets entering and leaving CLOSE_WAIT while the
// count stays flat: every second it makes -n new CLOSE_WAIT sockets on its
// own listening address (127.0.0.8) and, once it holds more than -hold,
// closes the oldest ones down to -hold.
//
// A new CLOSE_WAIT socket: connect from a unique source (address, port),
// accept, shutdown(SHUT_WR) the client end (the server end gets the FIN:
// CLOSE_WAIT), wait until the client end is FIN-WAIT-2, close it. The
// orphaned client end is a FIN-WAIT-2 time-wait mini socket for -linger2
// seconds (TCP_LINGER2), then gone. It is never reset: SO_LINGER 0 or a
// negative TCP_LINGER2 would send a RST that takes the server end out of
// CLOSE_WAIT. Closing an old server end sends its FIN (LAST-ACK); the peer,
// gone or in FIN-WAIT-2, answers with a RST or an ACK and the end is freed.
//
// Source pairs are 127.OCTET.X.Y with X in 128..254 (the setup clients use
// X < 128, the ESTABLISHED pairs X = 255), -per-addr ports from 20000 on
// each: 127*250*1000 = 31.75 million connections (176 hours at 50 a second)
// before a 4-tuple comes back, and none of them takes an ephemeral port.
const (
	churnFirstX = 128
	churnAddrs  = (255 - churnFirstX) * 250
	churnListen = "127.0.0.8"
)

// churnSource is the source (address, port) of churn connection k.
func churnSource(octet, k, perAddr int) netip.AddrPort {
	k %= churnAddrs * perAddr
	a := k / perAddr
	return netip.AddrPortFrom(addr4(octet, churnFirstX+a/250, 1+a%250), uint16(20000+k%perAddr))
}

// runChurn: prints LISTEN addr, then every -report a line
// "CHURN made=... closed=... held=... skipped=... late=... max_batch_ms=...";
// exits at stdin EOF, or with an ERROR line on any failure.
func runChurn(args []string) int {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	listen := fs.String("listen", churnListen+":0", "listen address")
	n := fs.Int("n", 50, "new CLOSE_WAIT sockets per second")
	hold := fs.Int("hold", 1000, "CLOSE_WAIT sockets kept; the oldest beyond are closed")
	octet := fs.Int("octet", 20, "second octet of the source addresses 127.OCTET.X.Y (X >= 128)")
	perAddr := fs.Int("per-addr", 1000, "connections per source address")
	linger2 := fs.Int("linger2", 5, "TCP_LINGER2 seconds of the closed client ends (0: tcp_fin_timeout)")
	report := fs.Duration("report", time.Minute, "status line interval (0: none)")
	fs.Parse(args)
	if *n <= 0 || *hold < 0 || *perAddr <= 0 || *perAddr > 40000 || *linger2 < 0 {
		return childErr(errors.New("churn: bad flags"))
	}
	lfd, ap, err := listenAt(*listen)
	if err != nil {
		return childErr(err)
	}
	lines := stdinLines()
	fmt.Println("LISTEN", ap)

	var (
		held                  []int // server ends in CLOSE_WAIT, oldest first
		k                     int   // next source index
		made, closed, skipped int
		late                  int // batches that took longer than the 1 s tick
		maxBatch              time.Duration
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reportC <-chan time.Time
	if *report > 0 {
		r := time.NewTicker(*report)
		defer r.Stop()
		reportC = r.C
	}
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return 0
			}
		case <-reportC:
			fmt.Printf("CHURN made=%d closed=%d held=%d skipped=%d late=%d max_batch_ms=%d\n",
				made, closed, len(held), skipped, late, maxBatch.Milliseconds())
		case <-tick.C:
			t0 := time.Now()
			servers, sk, err := churnBatch(lfd, ap, *n, *octet, *perAddr, *linger2, &k)
			skipped += sk
			if err != nil {
				return childErr(fmt.Errorf("churn batch after %d made: %w", made, err))
			}
			made += len(servers)
			held = append(held, servers...)
			if extra := len(held) - *hold; extra > 0 {
				for _, fd := range held[:extra] {
					unix.Close(fd)
				}
				closed += extra
				// Copy down so the backing array does not grow for ever.
				held = append(held[:0], held[extra:]...)
			}
			d := time.Since(t0)
			maxBatch = max(maxBatch, d)
			if d > time.Second {
				late++
			}
		}
	}
}

// churnBatch makes n CLOSE_WAIT server ends and returns them; sources that
// cannot be used (an old end of the same pair still around) are skipped,
// at most n of them per batch.
func churnBatch(lfd int, dst netip.AddrPort, n, octet, perAddr, linger2 int, k *int) ([]int, int, error) {
	clients := make([]int, 0, n)
	servers := make([]int, 0, n)
	fail := func(err error) ([]int, int, error) {
		for _, fd := range clients {
			unix.Close(fd)
		}
		for _, fd := range servers {
			unix.Close(fd)
		}
		return nil, 0, err
	}
	skipped := 0
	for len(clients) < n {
		src := churnSource(octet, *k, perAddr)
		*k++
		cfd, err := dialFrom(src, dst, linger2)
		if errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EADDRNOTAVAIL) {
			if skipped++; skipped > n {
				return fail(fmt.Errorf("%d sources in a row unusable: %w", skipped, err))
			}
			continue
		}
		if err != nil {
			return fail(err)
		}
		clients = append(clients, cfd)
		sfd, err := acceptWithin(lfd, 5*time.Second)
		if err != nil {
			return fail(err)
		}
		servers = append(servers, sfd)
	}
	for _, fd := range clients {
		if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
			return fail(fmt.Errorf("shutdown: %w", err))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, fd := range clients {
		if err := waitState(fd, unix.BPF_TCP_FIN_WAIT2, time.Until(deadline)); err != nil {
			return fail(fmt.Errorf("client end: %w", err))
		}
	}
	for _, fd := range servers {
		if err := waitState(fd, unix.BPF_TCP_CLOSE_WAIT, time.Until(deadline)); err != nil {
			return fail(fmt.Errorf("server end: %w", err))
		}
	}
	for _, fd := range clients {
		unix.Close(fd)
	}
	return servers, skipped, nil
}

// acceptWithin accepts one connection, waiting at most d.
func acceptWithin(lfd int, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return -1, fmt.Errorf("accept: nothing within %v", d)
		}
		m, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("poll: %w", err)
		}
		if m > 0 {
			return acceptOne(lfd)
		}
	}
}

// startChurn starts the churn child once the host is READY. Its status lines
// are logged; an ERROR line or its exit is sent on failed.
func (c *controller) startChurn(ctx context.Context, failed chan<- error) error {
	cfg := c.cfg
	ch, err := c.spawn("churn", "churn", "-listen", fmt.Sprintf("%s:%d", churnListen, cfg.port),
		"-n", strconv.Itoa(cfg.churn), "-hold", strconv.Itoa(cfg.churnHold),
		"-octet", strconv.Itoa(cfg.octet), "-per-addr", strconv.Itoa(cfg.perAddr),
		"-linger2", strconv.Itoa(cfg.churnLinger2), "-report", cfg.churnReport.String())
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	line, err := ch.expect(wctx, "LISTEN")
	if err != nil {
		return err
	}
	c.logf("churn started (pid %d): %d new CLOSE_WAIT a second on %s from 127.%d.%d-254.x, the oldest closed beyond %d held",
		ch.cmd.Process.Pid, cfg.churn, strings.TrimPrefix(line, "LISTEN "), cfg.octet, churnFirstX, cfg.churnHold)
	go func() {
		for l := range ch.lines {
			if strings.HasPrefix(l, "ERROR") {
				failed <- fmt.Errorf("%s", l)
				return
			}
			c.logf("churn: %s", strings.TrimPrefix(l, "CHURN "))
		}
		failed <- errors.New("churn child exited")
	}()
	return nil
}
