//go:build linux

package leakcheck_test

import (
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

// BenchmarkHTTP measures keep-alive loopback HTTP requests to a small
// handler, without leakcheck (plain) and with both the server's listener
// and the client's transport wrapped at the default sampling (tracked).
// Compare ns/op of the two with benchstat.
func BenchmarkHTTP(b *testing.B) {
	b.Run("wrap=none", func(b *testing.B) { benchHTTP(b, nil) })
	b.Run("wrap=leakcheck", func(b *testing.B) { benchHTTP(b, leakcheck.New(nil)) })
}

func benchHTTP(b *testing.B, tr *leakcheck.Tracker) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello, world\n"))
	})}
	transport := &http.Transport{MaxIdleConnsPerHost: 1}
	var rt http.RoundTripper = transport
	if tr != nil {
		go tr.Serve(srv, ln)
		rt = tr.Transport(transport)
	} else {
		go srv.Serve(ln)
	}
	defer srv.Close()
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: rt}
	url := "http://" + ln.Addr().String() + "/"
	get := func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	get() // open the keep-alive connection
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		get()
	}
	// On a shared machine wall time per request is noisy; the process's
	// CPU time per request (client and server together) is what bounds
	// throughput on a busy server.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the user+system CPU time used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDialClose measures the per-connection cost of tracking: a
// loopback dial, accept and close of both ends.
func BenchmarkDialClose(b *testing.B) {
	b.Run("wrap=none", func(b *testing.B) { benchDialClose(b, nil) })
	b.Run("wrap=leakcheck", func(b *testing.B) { benchDialClose(b, leakcheck.New(nil)) })
}

func benchDialClose(b *testing.B, tr *leakcheck.Tracker) {
	ln := listen(b)
	dial := (&net.Dialer{}).DialContext
	if tr != nil {
		ln = tr.Listener(ln)
		dial = tr.Dialer(nil)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
