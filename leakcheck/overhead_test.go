//go:build linux

package leakcheck_test

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"

	"github.com/closewait/closewait/leakcheck"
)

// nopConn is an in-memory connection whose reads and writes do nothing.
type nopConn struct{ net.Conn }

var nopAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

func (nopConn) Read(b []byte) (int, error)  { return len(b), nil }
func (nopConn) Write(b []byte) (int, error) { return len(b), nil }
func (nopConn) LocalAddr() net.Addr         { return nopAddr }
func (nopConn) RemoteAddr() net.Addr        { return nopAddr }
func (nopConn) Close() error                { return nil }

// fakeTransport hands every request the same connection, calling the
// request's GotConn hook as net/http.Transport does.
type fakeTransport struct{ conn net.Conn }

var okResp = &http.Response{StatusCode: http.StatusOK}

func (f fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.GotConn != nil {
		tr.GotConn(httptrace.GotConnInfo{Conn: f.conn, Reused: true})
	}
	return okResp, nil
}

// BenchmarkOverhead isolates what leakcheck adds to one keep-alive HTTP
// exchange, without the network: the client's RoundTripper (httptrace
// hook and request stack) and, on each side, one read and one write through
// the connection wrapper. The difference between the two variants,
// divided by BenchmarkHTTP/wrap=none, is the per-request cost; unlike the
// loopback benchmark it is stable on a busy machine.
func BenchmarkOverhead(b *testing.B) {
	for _, tracked := range []bool{false, true} {
		name := "wrap=none"
		if tracked {
			name = "wrap=leakcheck"
		}
		b.Run(name, func(b *testing.B) {
			var client, server net.Conn = nopConn{}, nopConn{}
			var rt http.RoundTripper
			if tracked {
				tr := leakcheck.New(nil)
				client, server = tr.Track(client), tr.Track(server)
				rt = tr.RoundTripper(fakeTransport{client})
			} else {
				rt = fakeTransport{client}
			}
			req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
				client.Write(buf)
				server.Read(buf)
				server.Write(buf)
				client.Read(buf)
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
