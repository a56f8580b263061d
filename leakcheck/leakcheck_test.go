//go:build linux

package leakcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

func TestLeakingServer(t *testing.T) {
	tr := leakcheck.New(nil)
	addr := serveTracked(t, tr, leakyHandler)
	for range 3 {
		halfClose(t, addr)
	}
	rep := waitMissingClose(t, tr, 3)
	if rep.CloseWait != 3 || len(rep.Groups) != 1 {
		t.Fatalf("want 3 leaks in 1 group, got:\n%s", rep)
	}
	g := rep.Groups[0]
	if !strings.Contains(g.Site, "leakcheck_test.leakyHandler") || g.Origin != leakcheck.OriginReadError {
		t.Errorf("site = %q origin %q, want leakyHandler at its read error\n%s", g.Site, g.Origin, rep)
	}
	if !strings.HasSuffix(g.Stack[0].File, "helpers_test.go") {
		t.Errorf("top frame file = %q", g.Stack[0].File)
	}
	if !strings.Contains(g.Advice, "defer conn.Close()") {
		t.Errorf("advice %q", g.Advice)
	}
	if g.Count != 3 || g.Inbound != 3 || g.Causes[leakcheck.CauseMissingClose] != 3 {
		t.Errorf("count %d inbound %d causes %v", g.Count, g.Inbound, g.Causes)
	}
	if len(g.Created) == 0 || !strings.Contains(g.Created[0].Function, "acceptLoop") {
		t.Errorf("created = %v, want acceptLoop", g.Created)
	}
	if g.OldestConn <= 0 || g.OldestCloseWait > time.Minute {
		t.Errorf("ages: conn %v close-wait %v", g.OldestConn, g.OldestCloseWait)
	}
	t.Logf("report:\n%s", rep)
}

func TestClosedConnsLeaveTracker(t *testing.T) {
	tr := leakcheck.New(nil)
	var accepted atomic.Int32
	addr := serveTracked(t, tr, func(c net.Conn) {
		accepted.Add(1)
		closingHandler(c)
	})
	dial := tr.Dialer(nil)
	for range 10 {
		c, err := dial(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitFor(t, "tracker to empty", 5*time.Second, func() bool { return accepted.Load() == 10 && tr.Len() == 0 })
	if rep := tr.Report(); rep.Tracked != 0 || rep.Leaks() {
		t.Fatalf("after close:\n%s", rep)
	}
}

// leakyFetch returns on a non-200 status without closing the response
// body, so the pooled connection can never be reused nor closed.
func leakyFetch(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch: %s", resp.Status) // deliberate leak: resp.Body not closed
	}
	return resp.Body.Close()
}

// goodFetch reads and closes the body: its connection goes back to the pool.
func goodFetch(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?ok=1", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

func TestLeakingPooledClient(t *testing.T) {
	// The server closes idle keep-alive connections quickly, like an
	// nginx keepalive_timeout; the client's connection whose body was
	// never closed is stuck and never sees the FIN: CLOSE_WAIT.
	srv := &http.Server{
		IdleTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("ok") == "" {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			w.Write([]byte("body"))
		}),
	}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/"

	tr := leakcheck.New(nil)
	client := &http.Client{Transport: tr.Transport(&http.Transport{})}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // releases the leaked connections

	for range 2 {
		if err := leakyFetch(ctx, client, url); err == nil {
			t.Fatal("leakyFetch: want an error")
		}
	}
	// Both connections are stuck: this one dials a third, which goes
	// back to the pool after the body is closed.
	if err := goodFetch(ctx, client, url); err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 3 {
		t.Fatalf("tracked %d connections, want 3", tr.Len())
	}
	waitCloseWait(t, tr, 2)
	// When the server closed the idle pooled connection, the transport
	// read the EOF and closed it: it leaves the tracker, the leaked two
	// stay.
	waitFor(t, "the pooled idle connection to leave the tracker", 5*time.Second, func() bool { return tr.Len() == 2 })
	rep := tr.Report()
	if rep.CloseWait != 2 || len(rep.Groups) != 1 {
		t.Fatalf("want 2 leaks in 1 group, got:\n%s", rep)
	}
	g := rep.Groups[0]
	if !strings.Contains(g.Site, "leakcheck_test.leakyFetch") || g.Origin != leakcheck.OriginRequest {
		t.Errorf("site %q origin %q, want leakyFetch's request\n%s", g.Site, g.Origin, rep)
	}
	if !strings.Contains(g.Advice, "resp.Body.Close()") {
		t.Errorf("advice %q", g.Advice)
	}
	if g.Outbound != 2 || g.Causes[leakcheck.CauseAbandonedUnread] != 2 {
		t.Errorf("outbound %d causes %v", g.Outbound, g.Causes)
	}
	t.Logf("report:\n%s", rep)

	cancel()
	waitFor(t, "leaked connections to be released", 5*time.Second, func() bool { return tr.Len() == 0 })
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msg += fmt.Sprintf(format, args...)
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }

func TestVerifyNone(t *testing.T) {
	t.Run("leak", func(t *testing.T) {
		tr := leakcheck.New(nil)
		halfClose(t, serveTracked(t, tr, leakyHandler))
		waitMissingClose(t, tr, 1)
		fake := &fakeTB{}
		leakcheck.VerifyNoneWithin(fake, tr, 50*time.Millisecond)
		if !fake.failed || !strings.Contains(fake.msg, "leakyHandler") {
			t.Fatalf("VerifyNone did not fail a leaking test: failed=%v msg=%q", fake.failed, fake.msg)
		}
	})
	t.Run("clean", func(t *testing.T) {
		tr := leakcheck.New(nil)
		var accepted atomic.Int32
		addr := serveTracked(t, tr, func(c net.Conn) {
			accepted.Add(1)
			closingHandler(c)
		})
		for range 5 {
			halfClose(t, addr)
		}
		// Check as soon as the server has the connections: some may
		// still be in CLOSE_WAIT for an instant, before the handler's
		// Close; VerifyNone's grace period covers that.
		waitFor(t, "connections accepted", 5*time.Second, func() bool { return accepted.Load() == 5 })
		fake := &fakeTB{}
		leakcheck.VerifyNone(fake, tr)
		if fake.failed {
			t.Fatalf("VerifyNone failed a clean test: %s", fake.msg)
		}
	})
}

func TestDroppedConnLeavesTracker(t *testing.T) {
	addr := listen(t)
	go acceptLoop(addr, closingHandler)
	tr := leakcheck.New(nil)
	func() {
		c, err := tr.Dialer(nil)(context.Background(), "tcp", addr.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c // dropped without Close
	}()
	if tr.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tr.Len())
	}
	// The tracker holds connections weakly: once collected (and closed by
	// the runtime's finalizer) the connection leaves the tracker.
	waitFor(t, "collected connection to leave the tracker", 10*time.Second, func() bool {
		runtime.GC()
		return tr.Len() == 0
	})
}

func TestHandler(t *testing.T) {
	tr := leakcheck.New(nil)
	halfClose(t, serveTracked(t, tr, leakyHandler))
	waitMissingClose(t, tr, 1)
	h := tr.Handler()

	for _, tt := range []struct {
		name, query, accept string
		json                bool
	}{
		{"text", "", "", false},
		{"query", "?format=json", "", true},
		{"accept", "", "text/html, application/json;q=0.9", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/debug/closewait"+tt.query, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			body := w.Body.String()
			if !tt.json {
				if !strings.Contains(body, "1 of 1 tracked connections in CLOSE_WAIT") || !strings.Contains(body, "leakyHandler") {
					t.Fatalf("text body:\n%s", body)
				}
				return
			}
			var got struct {
				CloseWait int `json:"close_wait"`
				Groups    []struct {
					Site            string         `json:"site"`
					Causes          map[string]int `json:"causes"`
					OldestCloseWait *float64       `json:"oldest_close_wait_seconds"`
				} `json:"groups"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			if got.CloseWait != 1 || len(got.Groups) != 1 || !strings.Contains(got.Groups[0].Site, "leakyHandler") ||
				got.Groups[0].OldestCloseWait == nil || got.Groups[0].Causes["missing-close"] != 1 {
				t.Fatalf("json body:\n%s", body)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	var logs bytes.Buffer
	leaks := make(chan *leakcheck.Report, 1)
	tr := leakcheck.New(&leakcheck.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnLeak: func(r *leakcheck.Report) {
			select {
			case leaks <- r:
			default:
			}
		},
	})
	halfClose(t, serveTracked(t, tr, leakyHandler))
	waitMissingClose(t, tr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Watch(ctx, 10*time.Millisecond) }()
	var rep *leakcheck.Report
	select {
	case rep = <-leaks:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnLeak call")
	}
	cancel()
	<-done
	if rep.CloseWait != 1 || !strings.Contains(rep.Groups[0].Site, "leakyHandler") {
		t.Fatalf("OnLeak report:\n%s", rep)
	}
	if l := logs.String(); !strings.Contains(l, "leaked in CLOSE_WAIT") || !strings.Contains(l, "leakyHandler") || strings.Count(l, "\n") != 1 {
		t.Fatalf("want one log line, got:\n%s", l)
	}
}

func TestNoStacks(t *testing.T) {
	tr := leakcheck.New(&leakcheck.Options{SampleRate: -1})
	halfClose(t, serveTracked(t, tr, leakyHandler))
	rep := waitCloseWait(t, tr, 1)
	if g := rep.Groups[0]; g.Origin != leakcheck.OriginUnknown || len(g.Stack) != 0 || g.Count != 1 {
		t.Fatalf("unsampled group: %+v", g)
	}
}

func TestNotTCP(t *testing.T) {
	tr := leakcheck.New(nil)
	a, b := net.Pipe()
	defer b.Close()
	c := tr.Track(a)
	defer c.Close()
	if rep := tr.Report(); rep.Errors != 1 || rep.Tracked != 0 || rep.Leaks() {
		t.Fatalf("pipe: %+v", rep)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 0 {
		t.Fatalf("Len after Close = %d", tr.Len())
	}
}

func TestHijackedHTTPServerConn(t *testing.T) {
	tr := leakcheck.New(nil)
	srv := &http.Server{Handler: http.HandlerFunc(hijackingHandler)}
	ln := listen(t)
	go tr.Serve(srv, ln)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The kernel shows the EOF read (Recv-Q 0) a moment before the
	// wrapper's Read returns and records its stack: wait for both.
	rep := waitReport(t, tr, "the hijacked connection in CLOSE_WAIT after EOF, with its stack", func(rep *leakcheck.Report) bool {
		return len(rep.Groups) > 0 && rep.Groups[0].Causes[leakcheck.CauseMissingClose] == 1 && len(rep.Groups[0].Stack) > 0
	})
	if g := rep.Groups[0]; !strings.Contains(g.Site, "hijackingHandler") {
		t.Fatalf("site %q\n%s", g.Site, rep)
	}
}

// hijackingHandler takes over the connection and returns on EOF without
// closing it.
func hijackingHandler(w http.ResponseWriter, r *http.Request) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	_ = rw
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, net.ErrClosed) {
				c.Close()
			}
			return // deliberate leak on EOF
		}
	}
}

func TestInstallDefaultTransport(t *testing.T) {
	orig := http.DefaultTransport
	origDial := orig.(*http.Transport).DialContext
	t.Cleanup(func() {
		http.DefaultTransport = orig
		orig.(*http.Transport).DialContext = origDial
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr := leakcheck.New(nil)
	tr.InstallDefaultTransport()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if tr.Len() != 1 {
		t.Fatalf("Len = %d after http.Get, want 1 pooled connection", tr.Len())
	}
	orig.(*http.Transport).CloseIdleConnections()
	waitFor(t, "idle connection closed", 5*time.Second, func() bool { return tr.Len() == 0 })
}

func TestMinAge(t *testing.T) {
	tr := leakcheck.New(&leakcheck.Options{MinAge: time.Hour})
	halfClose(t, serveTracked(t, tr, leakyHandler))
	rep := waitReport(t, tr, "a young CLOSE_WAIT connection", func(r *leakcheck.Report) bool { return r.Young == 1 })
	if rep.CloseWait != 0 || len(rep.Groups) != 0 || rep.States["CLOSE_WAIT"] != 1 {
		t.Fatalf("young leak reported: %+v", rep)
	}
}

func TestSampleRate(t *testing.T) {
	tr := leakcheck.New(&leakcheck.Options{SampleRate: 2})
	addr := serveTracked(t, tr, leakyHandler)
	for range 4 {
		halfClose(t, addr)
	}
	// Stacks of one connection in two: the sampled ones are attributed,
	// the others counted in a group without a stack.
	rep := waitReport(t, tr, "4 leaks, 2 attributed", func(r *leakcheck.Report) bool {
		for _, g := range r.Groups {
			if g.Causes[leakcheck.CauseMissingClose] == 2 && strings.Contains(g.Site, "leakyHandler") {
				return r.CloseWait == 4
			}
		}
		return false
	})
	if len(rep.Groups) != 2 {
		t.Fatalf("want 2 groups:\n%s", rep)
	}
	for _, g := range rep.Groups {
		if g.Count != 2 {
			t.Errorf("group %s: count %d, want 2", g.Site, g.Count)
		}
	}
}

// TestLeakingTLSClient checks that requests are attributed through TLS: the
// transport's connection is a *tls.Conn over the tracked one.
func TestLeakingTLSClient(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A body, or the transport would reuse the connection at once.
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tr := leakcheck.New(nil)
	transport := srv.Client().Transport.(*http.Transport).Clone()
	client := &http.Client{Transport: tr.Transport(transport)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := leakyFetch(ctx, client, srv.URL); err == nil {
		t.Fatal("leakyFetch: want an error")
	}
	rep := waitCloseWait(t, tr, 1)
	if g := rep.Groups[0]; !strings.Contains(g.Site, "leakcheck_test.leakyFetch") || g.Origin != leakcheck.OriginRequest {
		t.Fatalf("site %q origin %q\n%s", g.Site, g.Origin, rep)
	}
}
