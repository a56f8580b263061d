package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

// The situations of issue 14, each a real process on loopback (see
// cwtest.StartFDExhausted, StartGoodbyePool, StartBlockedWorkers), and
// what closewait explain must say about them.

// logFinding shows a finding in -v output: what the scenario showed.
func logFinding(t *testing.T, f *report.JSONFinding) {
	t.Helper()
	if f != nil && testing.Verbose() {
		t.Logf("%s %s (remote %q, port %d): %d sockets, idle timeout %.3f s\n  evidence: %q\n  next steps: %q\n  fix: %q\n  peeked: %+v",
			f.Cause, f.Direction, f.Remote, f.LocalPort, f.Count, f.RemoteIdleTimeoutSeconds, f.Evidence, f.NextSteps, f.Fix, f.Peeked)
	}
}

// TestScenarioFDExhausted: a server under an fd limit of 64 that leaks
// every connection it accepts, with 100 clients that half-close. The
// queued connections are fd-exhausted, with the limit raised live as the
// first step; the accepted ones are the leak.
func TestScenarioFDExhausted(t *testing.T) {
	s := cwtest.StartFDExhausted(t, 64, 100)
	pid := strconv.Itoa(s.PID)
	p, r := explainJSON(t, s.PID)
	if r.code == 3 {
		t.Fatalf("explain: exit 3: %s", r.stderr)
	}
	if p.FDLimit != 64 || p.OpenFDs < 64 || p.NotAccepted != s.Queued {
		t.Errorf("fds %d of %d, not accepted %d; want at the limit of 64, %d not accepted", p.OpenFDs, p.FDLimit, p.NotAccepted, s.Queued)
	}
	f := findCause(p, "fd-exhausted")
	logFinding(t, f)
	if f == nil {
		t.Fatalf("findings %v, want fd-exhausted", causes(p))
	}
	if f.Direction != "inbound" || f.LocalPort != s.Listen.Port() || f.Count != s.Queued {
		t.Errorf("fd-exhausted %s on port %d, %d sockets; want inbound on %d, %d", f.Direction, f.LocalPort, f.Count, s.Listen.Port(), s.Queued)
	}
	ev := strings.Join(f.Evidence, "\n")
	fds := regexp.MustCompile(`\b` + strconv.Itoa(p.OpenFDs) + `\b[^\n]*\b64\b`)
	if !fds.MatchString(ev) || !strings.Contains(ev, "EMFILE") {
		t.Errorf("fd-exhausted evidence does not name the %d open fds, the limit 64 and EMFILE:\n%s", p.OpenFDs, ev)
	}
	steps := strings.Join(f.NextSteps, "\n")
	if !strings.Contains(steps, "prlimit --pid "+pid+" --nofile=") {
		t.Errorf("fd-exhausted next steps lack prlimit --pid %s --nofile=:\n%s", pid, steps)
	}
	if i := strings.Index(steps, "prlimit"); i < 0 || strings.Contains(steps[:i], "\n") {
		t.Errorf("raising the limit is not the first step:\n%s", steps)
	}
	if na := findCause(p, "not-accepted"); na != nil {
		t.Errorf("the queued sockets are also not-accepted (%d): the cause is the fd limit", na.Count)
	}
	leak := findCause(p, "missing-close")
	logFinding(t, leak)
	if leak == nil || leak.LocalPort != s.Listen.Port() || leak.Count != s.Accepted {
		t.Errorf("findings %v: want the leak, missing-close on port %d with %d sockets", causes(p), s.Listen.Port(), s.Accepted)
	}

	r = run(t, nil, "explain", pid)
	for _, want := range []string{"fd-exhausted:", "prlimit --pid " + pid + " --nofile=", "missing-close:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("explain text lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestScenarioGoodbyePool: a client pool of 6 connections whose server
// writes an error line and closes connections idle for 1 s. They are
// pool-idle to that server, with its idle timeout, and --peek shows the line.
func TestScenarioGoodbyePool(t *testing.T) {
	const conns = 6
	pool := cwtest.StartGoodbyePool(t, conns, time.Second)
	p, r := explainJSON(t, pool.PID, "--peek")
	if r.code == 3 {
		t.Fatalf("explain: exit 3: %s", r.stderr)
	}
	f := findCause(p, "pool-idle")
	logFinding(t, f)
	if f == nil || len(p.Findings) != 1 {
		t.Fatalf("findings %v, want one pool-idle", causes(p))
	}
	if f.Direction != "outbound" || f.Remote != pool.Server.String() || f.Count != conns {
		t.Errorf("pool-idle %s to %s, %d sockets; want outbound to %s, %d", f.Direction, f.Remote, f.Count, pool.Server, conns)
	}
	if v := f.RemoteIdleTimeoutSeconds; v < 0.5 || v > 3 {
		t.Errorf("server idle timeout estimated %.3f s, want about 1 s", v)
	}
	ev := strings.Join(f.Evidence, "\n")
	if n := len(pool.Line); !strings.Contains(ev, fmt.Sprintf("%d bytes", n)) {
		t.Errorf("pool-idle evidence does not name the %d unread bytes:\n%s", n, ev)
	}
	pk := f.Peeked
	if pk == nil {
		t.Fatalf("pool-idle has no peeked bytes with --peek")
	}
	want := `FATAL: terminating connection due to idle-session timeout\n`
	if pk.Text != want || pk.Bytes != len(pool.Line) || pk.Error != "" || !strings.HasSuffix(pk.Socket, "->"+pool.Server.String()) {
		t.Errorf("peeked %+v; want %q, %d bytes, on a socket to %s", pk, want, len(pool.Line), pool.Server)
	}

	r = run(t, nil, "explain", strconv.Itoa(pool.PID), "--peek")
	if s := `the peer sent, unread: "` + want + `"`; !strings.Contains(r.stdout, s) {
		t.Errorf("explain --peek lacks %q:\n%s", s, r.stdout)
	}
}

// TestScenarioBlockedWorkers: a threaded Python server whose 30 workers
// all wait on one lock before reading. The sockets are abandoned-unread,
// and the advice is about the lock, not about closing sockets.
func TestScenarioBlockedWorkers(t *testing.T) {
	const clients = 30
	b := cwtest.StartBlockedWorkers(t, clients)
	pid := strconv.Itoa(b.PID)
	p, r := explainJSON(t, b.PID)
	if r.code == 3 {
		t.Fatalf("explain: exit 3: %s", r.stderr)
	}
	if p.Runtime != "python" || p.Threads == nil || p.Threads.Total != b.Threads {
		t.Fatalf("runtime %q, threads %+v; want python with %d threads", p.Runtime, p.Threads, b.Threads)
	}
	futex := 0
	for _, g := range p.Threads.Groups {
		if strings.Contains(g.Wait, "futex") {
			futex += g.Count
		}
	}
	if futex != clients {
		t.Errorf("threads %+v: want %d in futex", p.Threads.Groups, clients)
	}
	f := findCause(p, "abandoned-unread")
	logFinding(t, f)
	if f == nil || len(p.Findings) != 1 {
		t.Fatalf("findings %v, want one abandoned-unread", causes(p))
	}
	if f.Direction != "inbound" || f.LocalPort != b.Listen.Port() || f.Count != clients {
		t.Errorf("abandoned-unread %s on port %d, %d sockets; want inbound on %d, %d", f.Direction, f.LocalPort, f.Count, b.Listen.Port(), clients)
	}
	advice := strings.Join(append(append([]string{}, f.NextSteps...), f.Fix...), "\n")
	for _, want := range []string{"py-spy dump --pid " + pid, "lock", "holder", "timeout"} {
		if !strings.Contains(advice, want) {
			t.Errorf("blocked-worker advice lacks %q:\n%s", want, advice)
		}
	}
	for _, bad := range []string{"use with:", "requests:", "with socket.create_connection"} {
		if strings.Contains(advice, bad) {
			t.Errorf("blocked-worker advice has close advice %q:\n%s", bad, advice)
		}
	}
}
