package cwtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The scenarios below are whole situations that get people paged, each a
// real process on loopback that the test starts and ends by its pid:
//
//   - StartFDExhausted: a server at its fd limit whose accept fails with
//     EMFILE, its queue filling with connections its clients gave up on;
//   - StartGoodbyePool: a client pool whose server says goodbye (one error
//     line) before closing idle connections;
//   - StartBlockedWorkers: a threaded Python server whose workers all wait
//     on one lock, never reading their connections.

// FDExhausted is a server that leaks every connection it accepts until it
// reaches its fd limit; see StartFDExhausted.
type FDExhausted struct {
	*Holder       // the server: PID, Listen, and Conns ("read-eof" accepted, "not-accepted" queued)
	Limit    int  // its RLIMIT_NOFILE, soft and hard
	Accepted int  // connections it accepted, read to EOF and never closed (Recv-Q 0, each an fd)
	Queued   int  // connections left in its accept queue (no fd), their peers gone
	EMFILE   bool // accept(2) failed with EMFILE at least once
}

// fdLeakSpec is what the fdleak child is told.
type fdLeakSpec struct{ Limit uint64 }

// StartFDExhausted starts a Go server whose fd limit is limit (soft and
// hard, as prlimit --nofile=LIMIT sets it), which serves each connection
// in a goroutine that reads it to EOF and returns without closing it, and
// which retries accept every 100 ms when it fails (as net/http does). It
// then connects clients clients to it, each half-closing (FIN) and staying
// in FIN_WAIT2: the server accepts until its fds run out (EMFILE), the rest
// wait in its accept queue in CLOSE_WAIT with no fd. It returns once the
// server has hit EMFILE and read every accepted connection to EOF.
func StartFDExhausted(t testing.TB, limit, clients int) *FDExhausted {
	t.Helper()
	b, _ := json.Marshal(fdLeakSpec{Limit: uint64(limit)})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=fdleak", envSpec+"="+string(b))
	h := launch(t, cmd)
	h.Listen = netip.MustParseAddrPort(h.expect("LISTEN")[1])
	for i := 0; i < clients; i++ {
		c := h.dialHalfClose(Spec{Network: "tcp4"}, "client")
		h.Conns = append(h.Conns, Conn{Local: h.Listen, Remote: addrPort(c.LocalAddr())})
	}
	s := &FDExhausted{Holder: h, Limit: limit}
	accepted := map[netip.AddrPort]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.send("status")
		f := h.expect("STATUS") // STATUS accepted eof emfile
		n, _ := strconv.Atoi(f[1])
		eof, _ := strconv.Atoi(f[2])
		if f[3] == "true" && eof == n {
			s.Accepted, s.EMFILE = n, true
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cwtest: fd-limited server: accepted %d, read %d to EOF, EMFILE %s after 10s (%d clients, limit %d)", n, eof, f[3], clients, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.send("list")
	for {
		f := h.expect("CONN")
		if len(f) == 2 && f[1] == "done" {
			break
		}
		accepted[netip.MustParseAddrPort(f[2])] = true
	}
	for i := range h.Conns {
		if accepted[h.Conns[i].Remote] {
			h.Conns[i].Mode = "read-eof"
		} else {
			h.Conns[i].Mode = "not-accepted"
			s.Queued++
		}
	}
	if len(accepted) != s.Accepted || s.Queued == 0 {
		t.Fatalf("cwtest: fd-limited server accepted %d (listed %d) of %d clients, %d queued: want some queued", s.Accepted, len(accepted), clients, s.Queued)
	}
	return s
}

// runFDLeak is the fdleak child: see StartFDExhausted.
func runFDLeak() error {
	var spec fdLeakSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
		return err
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: spec.Limit, Max: spec.Limit}); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		eof    int
		emfile bool
	)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			mu.Lock()
			switch sc.Text() {
			case "status":
				fmt.Println("STATUS", len(conns), eof, emfile)
			case "list":
				w := bufio.NewWriter(os.Stdout)
				for _, c := range conns {
					fmt.Fprintln(w, "CONN", addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
				}
				fmt.Fprintln(w, "CONN done")
				w.Flush()
			}
			mu.Unlock()
		}
		os.Exit(0) // parent gone
	}()
	fmt.Println("LISTEN", addrPort(ln.Addr()))
	for {
		c, err := ln.Accept()
		if errors.Is(err, syscall.EMFILE) {
			mu.Lock()
			emfile = true
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		go func() {
			_, _ = io.Copy(io.Discard, c) // to EOF; then return without Close: the leak
			mu.Lock()
			eof++
			mu.Unlock()
		}()
	}
}

// GoodbyePool is a client process holding a pool of connections that its
// server closed after saying goodbye; see StartGoodbyePool.
type GoodbyePool struct {
	*Holder                // the client: PID and Conns ("dial", its ends)
	Server  netip.AddrPort // the server the pool talks to
	Line    string         // what the server wrote before closing each idle connection
	Idle    time.Duration  // how long the server let a connection sit idle
}

// GoodbyeLine is the goodbye StartGoodbyePool's server writes: PostgreSQL's
// idle_session_timeout message, as its psql client prints it.
const GoodbyeLine = "FATAL: terminating connection due to idle-session timeout\n"

// poolSpec is what the pool child is told.
type poolSpec struct {
	Server string
	Conns  int
}

// StartGoodbyePool starts a server in the test process that answers each
// request line "PING" with "PONG" and, once a connection has been idle for
// idle, writes GoodbyeLine and closes it; then a client process that opens
// a pool of conns connections to it, uses each once (one request, one
// response) and never reads again. When it returns, every pooled
// connection is in CLOSE_WAIT at the client with Recv-Q len(GoodbyeLine)+1:
// the goodbye arrived together with the FIN, about idle after the request.
func StartGoodbyePool(t testing.TB, conns int, idle time.Duration) *GoodbyePool {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cwtest: listen: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var served []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range served {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			served = append(served, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serveGoodbye(c, idle) }()
		}
	}()

	p := &GoodbyePool{Server: addrPort(ln.Addr()), Line: GoodbyeLine, Idle: idle}
	b, _ := json.Marshal(poolSpec{Server: p.Server.String(), Conns: conns})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=pool", envSpec+"="+string(b))
	p.Holder = launch(t, cmd)
	for i := 0; i < conns; i++ {
		f := p.expect("DIAL")
		p.Conns = append(p.Conns, Conn{Local: netip.MustParseAddrPort(f[1]), Remote: netip.MustParseAddrPort(f[2]), Mode: "dial"})
	}
	p.expect("READY")
	return p
}

// serveGoodbye answers "PING" lines with "PONG" until the connection has
// been idle for idle, then says goodbye and closes it.
func serveGoodbye(c net.Conn, idle time.Duration) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		line, err := r.ReadString('\n')
		if errors.Is(err, os.ErrDeadlineExceeded) {
			_, _ = io.WriteString(c, GoodbyeLine)
			return
		}
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "PING" {
			_, _ = io.WriteString(c, "PONG\n")
		}
	}
}

// runPool is the pool child: see StartGoodbyePool.
func runPool() error {
	var spec poolSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0) // parent gone
	}()
	d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	var pool []*net.TCPConn
	for i := 0; i < spec.Conns; i++ {
		c, err := d.Dial("tcp4", spec.Server)
		if err != nil {
			return err
		}
		tc := c.(*net.TCPConn)
		pool = append(pool, tc)
		if _, err := io.WriteString(tc, "PING\n"); err != nil {
			return err
		}
		// Read exactly the response, byte by byte: nothing more may be taken
		// from the socket (the goodbye must stay unread).
		var resp []byte
		for b := make([]byte, 1); len(resp) == 0 || resp[len(resp)-1] != '\n'; {
			if _, err := tc.Read(b); err != nil {
				return fmt.Errorf("response: %w", err)
			}
			resp = append(resp, b[0])
		}
		if string(resp) != "PONG\n" {
			return fmt.Errorf("response %q", resp)
		}
		fmt.Println("DIAL", addrPort(tc.LocalAddr()), addrPort(tc.RemoteAddr()))
	}
	for _, tc := range pool {
		if err := WaitState(tc, unix.BPF_TCP_CLOSE_WAIT, 20*time.Second); err != nil {
			return fmt.Errorf("pooled connection: %w", err)
		}
	}
	fmt.Println("READY")
	select {} // hold the pool, never reading, until killed or stdin closes
}

// BlockedWorkers is a Python server whose worker threads all wait on one
// lock; see StartBlockedWorkers.
type BlockedWorkers struct {
	*Holder     // the server: PID, Listen, and Conns ("unread")
	Threads int // its threads: the main one (accepting) and one worker per connection
}

// blockedScript is the server of StartBlockedWorkers. The main thread
// takes the lock and keeps it while it accepts; each connection is handed
// to a worker thread that needs the lock before it reads, so every worker
// sleeps in futex and no connection is ever read or closed.
const blockedScript = `import os, selectors, socket, sys, threading
lock = threading.Lock()
lock.acquire()  # held by the main thread for ever

def worker(conn):
    with lock:  # blocks: the holder never lets go
        while conn.recv(4096):
            pass
        conn.close()

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
print("LISTEN 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
sel.register(sys.stdin, selectors.EVENT_READ)
conns = []
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            conn, peer = srv.accept()
            conns.append(conn)
            threading.Thread(target=worker, args=(conn,), daemon=True).start()
            print("CONN 127.0.0.1:%d %s:%d" % (conn.getsockname()[1], peer[0], peer[1]), flush=True)
        elif not os.read(0, 4096):
            os._exit(0)  # the test is gone
`

// StartBlockedWorkers starts a threaded Python 3 server (skipping the test
// without python3) that hands each connection to a new worker thread, and
// every worker waits for a lock the main thread holds for ever before it
// reads. It connects clients clients, each half-closing: the server's ends
// are inbound CLOSE_WAIT with Recv-Q 1, and all threads but the main one
// sleep in futex. It returns once the workers are all asleep.
func StartBlockedWorkers(t testing.TB, clients int) *BlockedWorkers {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 for the blocked-worker server")
	}
	script := filepath.Join(t.TempDir(), "blocked.py")
	if err := os.WriteFile(script, []byte(blockedScript), 0o644); err != nil {
		t.Fatal(err)
	}
	h := launch(t, exec.Command(py, script))
	h.Listen = netip.MustParseAddrPort(h.expect("LISTEN")[1])
	for i := 0; i < clients; i++ {
		c := h.dialHalfClose(Spec{Network: "tcp4"}, "unread")
		f := h.expect("CONN")
		conn := Conn{Local: netip.MustParseAddrPort(f[1]), Remote: netip.MustParseAddrPort(f[2]), Mode: "unread"}
		if conn.Remote != addrPort(c.LocalAddr()) {
			t.Fatalf("cwtest: blocked-worker server accepted %v, want %v", conn.Remote, c.LocalAddr())
		}
		h.Conns = append(h.Conns, conn)
	}
	b := &BlockedWorkers{Holder: h, Threads: clients + 1}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, futex := threadWaits(h.PID)
		if n == b.Threads && futex >= clients {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("cwtest: blocked-worker server has %d threads, %d in futex after 10s; want %d, %d", n, futex, b.Threads, clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadWaits counts the threads of pid and those sleeping in a futex wait.
func threadWaits(pid int) (threads, futex int) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		threads++
		if w, err := os.ReadFile(filepath.Join(dir, e.Name(), "wchan")); err == nil && strings.Contains(string(w), "futex") {
			futex++
		}
	}
	return threads, futex
}
