package leakcheck_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

// leakyHandler reads until the peer closes, then returns without closing
// c: the bug every test here looks for.
func leakyHandler(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return // deliberate leak: no c.Close()
		}
	}
}

// closingHandler reads until the peer closes, then closes c.
func closingHandler(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveTracked accepts connections on a tracked loopback listener and runs
// handler on each. The test's cleanup closes every accepted connection, so
// leaks do not outlive the test.
func serveTracked(t testing.TB, tr *leakcheck.Tracker, handler func(net.Conn)) string {
	t.Helper()
	ln := tr.Listener(listen(t))
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go acceptLoop(ln, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		handler(c)
	})
	return ln.Addr().String()
}

func acceptLoop(ln net.Listener, handler func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handler(c)
	}
}

// halfClose dials addr, writes a line and shuts down its sending side, so
// that the server's socket gets the FIN while ours stays open (FIN-WAIT-2)
// until the test ends.
func halfClose(t testing.TB, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// waitCloseWait polls the kernel state of tr's connections until n of them
// are in CLOSE_WAIT, and returns that report.
func waitCloseWait(t testing.TB, tr *leakcheck.Tracker, n int) *leakcheck.Report {
	t.Helper()
	return waitReport(t, tr, fmt.Sprintf("%d connections in CLOSE_WAIT", n), func(rep *leakcheck.Report) bool {
		return rep.CloseWait >= n
	})
}

// waitMissingClose waits until n tracked connections are in CLOSE_WAIT
// after their handler read EOF. The kernel enters CLOSE_WAIT as soon as the
// FIN arrives, before the handler's Read returns: waiting for the EOF makes
// the attribution (read-error stack) deterministic.
func waitMissingClose(t testing.TB, tr *leakcheck.Tracker, n int) *leakcheck.Report {
	t.Helper()
	return waitReport(t, tr, fmt.Sprintf("%d connections in CLOSE_WAIT after EOF", n), func(rep *leakcheck.Report) bool {
		eof := 0
		for _, g := range rep.Groups {
			eof += g.Causes[leakcheck.CauseMissingClose]
		}
		return eof >= n
	})
}

func waitReport(t testing.TB, tr *leakcheck.Tracker, what string, cond func(*leakcheck.Report) bool) *leakcheck.Report {
	t.Helper()
	var rep *leakcheck.Report
	waitFor(t, what, 10*time.Second, func() bool {
		rep = tr.Report()
		return cond(rep)
	})
	return rep
}
