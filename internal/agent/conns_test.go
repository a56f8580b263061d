package agent_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/agent"
)

// serveLimited serves a scanned agent through agent.Serve (the agent
// command's path: connection cap, no web config) and returns its address.
func serveLimited(t *testing.T, idle time.Duration) string {
	t.Helper()
	a := newAgent(t, agent.Options{})
	scan(t, a)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(a.Handler())
	if idle > 0 {
		srv.IdleTimeout = idle
	}
	done := make(chan error, 1)
	go func() { done <- agent.Serve(ln, srv, "", slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// healthz makes a fresh request on a new connection.
func healthz(t *testing.T, addr string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz while the connections are held: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d %s", resp.StatusCode, b)
	}
}

// stillOpen returns how many of conns the server has not closed: each is
// read until a shared deadline; a closed one reads EOF (or a reset) at once.
func stillOpen(conns []net.Conn) int {
	deadline := time.Now().Add(2 * time.Second)
	var mu sync.Mutex
	var wg sync.WaitGroup
	open := 0
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				open++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return open
}

func dialAll(t *testing.T, addr string, n int, send string, readResponse bool) []net.Conn {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if readResponse { // the connection is then idle, kept alive
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	return conns
}

// TestServeBoundsIdleConnections (issue 16 item 4): a thousand keep-alive
// connections left idle after one request each. The server keeps at most
// MaxConns of them, closing the oldest idle ones, and still answers a new
// /healthz.
func TestServeBoundsIdleConnections(t *testing.T) {
	addr := serveLimited(t, 0)
	const n = 1000
	conns := dialAll(t, addr, n, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true)
	healthz(t, addr)
	if open := stillOpen(conns); open > agent.MaxConns || open == 0 {
		t.Errorf("%d of %d idle connections still open, want 1..%d (the newest)", open, n, agent.MaxConns)
	}
}

// TestServeBoundsSlowloris (issue 16 item 4): clients that open a request and
// never finish its headers cannot hold more than MaxConns connections, and
// /healthz is still served.
func TestServeBoundsSlowloris(t *testing.T) {
	addr := serveLimited(t, 0)
	n := agent.MaxConns + 100
	conns := dialAll(t, addr, n, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", false)
	healthz(t, addr)
	if open := stillOpen(conns); open > agent.MaxConns {
		t.Errorf("%d of %d slow connections still open, want at most %d", open, n, agent.MaxConns)
	}
}

// TestServeClosesIdleConnections: a keep-alive connection idle past the
// server's IdleTimeout is closed (NewServer sets it; Serve keeps it).
func TestServeClosesIdleConnections(t *testing.T) {
	if agent.IdleTimeout > 30*time.Second {
		t.Errorf("IdleTimeout %v: idle connections would stay open for long", agent.IdleTimeout)
	}
	addr := serveLimited(t, 300*time.Millisecond)
	conns := dialAll(t, addr, 3, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true)
	if open := stillOpen(conns); open != 0 {
		t.Errorf("%d idle connections still open 2s after an idle timeout of 300ms", open)
	}
}
