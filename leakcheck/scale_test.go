//go:build linux

package leakcheck_test

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

// TestNoGrowth100k dials and closes 100k tracked loopback connections
// (both ends tracked) and checks that the tracker empties and the heap does
// not grow with the number of connections ever tracked.
func TestNoGrowth100k(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	tr := leakcheck.New(nil)
	ln := tr.Listener(listen(t))
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted.Add(1)
		}
	}()
	addr := ln.Addr().String()

	// Spread the client ends over 250 loopback addresses: each closed
	// client leaves a TIME_WAIT socket, and one address has only ~28k
	// ephemeral ports.
	var dials [250]leakcheck.DialFunc
	for i := range dials {
		dials[i] = tr.Dialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}})
	}
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	start := time.Now()
	var base uint64
	for i := range n {
		if i == 2_000 {
			base = heap()
		}
		c, err := dials[i%len(dials)](ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
		if l := tr.Len(); l > 1_000 {
			t.Fatalf("after %d connections, %d still tracked", i, l)
		}
	}
	elapsed := time.Since(start)
	waitFor(t, "every connection accepted and closed", 10*time.Second, func() bool {
		return accepted.Load() == int64(n) && tr.Len() == 0
	})
	end := heap()
	t.Logf("%d connections in %v (%v each); heap %d KiB at 2k, %d KiB at end",
		n, elapsed.Round(time.Millisecond), elapsed/time.Duration(n), base>>10, end>>10)
	if end > base+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes over %d connections", base, end, n)
	}
	if rep := tr.Report(); rep.Tracked != 0 || rep.Errors != 0 {
		t.Fatalf("report after all closed: %+v", rep)
	}
}
