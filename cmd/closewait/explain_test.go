package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

// explainJSON runs closewait explain PID --json and decodes the process object.
func explainJSON(t *testing.T, pid int, extra ...string) (report.JSONProcess, result) {
	t.Helper()
	r := run(t, nil, append([]string{"explain", strconv.Itoa(pid), "--json"}, extra...)...)
	var p report.JSONProcess
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("explain --json is not a JSON object (%v), exit %d:\n%s\nstderr: %s", err, r.code, r.stdout, r.stderr)
	}
	return p, r
}

func findCause(p report.JSONProcess, cause string) *report.JSONFinding {
	for i := range p.Findings {
		if p.Findings[i].Cause == cause {
			return &p.Findings[i]
		}
	}
	return nil
}

func causes(p report.JSONProcess) []string {
	var out []string
	for _, f := range p.Findings {
		out = append(out, fmt.Sprintf("%s/%s/%d", f.Cause, f.Direction, f.Count))
	}
	return out
}

// TestExplainServerFindings starts holders that each show one server bug and
// checks the finding closewait names, with its fields.
func TestExplainServerFindings(t *testing.T) {
	tests := []struct {
		name     string
		spec     cwtest.Spec
		cause    string
		count    int
		evidence string
	}{
		{"reads EOF and never closes", cwtest.Spec{ReadEOF: 8}, "missing-close", 8, "have Recv-Q 0: the app read up to EOF"},
		{"worker never reads", cwtest.Spec{Unread: 7, UnreadBytes: 100}, "abandoned-unread", 7, "7 still hold unread data (up to 100 bytes)"},
		{"stops accepting", cwtest.Spec{NotAccepted: 6}, "not-accepted", 6, "wait in the accept queue"},
		{"IPv6 reads EOF", cwtest.Spec{Network: "tcp6", ReadEOF: 6, KeepAlive: true}, "missing-close", 6, "6 of 6 have SO_KEEPALIVE set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := cwtest.Start(t, tt.spec)
			p, r := explainJSON(t, h.PID)
			if r.code != 0 {
				t.Errorf("exit %d, want 0 (under every threshold): %s", r.code, r.stderr)
			}
			if p.PID != h.PID || p.CloseWait != tt.count || len(p.Findings) != 1 {
				t.Fatalf("pid %d close_wait %d findings %v; want pid %d, %d sockets, one finding", p.PID, p.CloseWait, causes(p), h.PID, tt.count)
			}
			f := p.Findings[0]
			if f.Cause != tt.cause || f.Direction != "inbound" || f.LocalPort != h.Listen.Port() || f.Count != tt.count || f.Remote != "" {
				t.Errorf("finding %+v; want %s inbound on port %d, %d sockets", f, tt.cause, h.Listen.Port(), tt.count)
			}
			ev := strings.Join(f.Evidence, "\n")
			if !strings.Contains(ev, tt.evidence) {
				t.Errorf("evidence lacks %q:\n%s", tt.evidence, ev)
			}
			if !strings.Contains(f.Check, ":"+strconv.Itoa(int(h.Listen.Port()))) || len(f.NextSteps) == 0 || len(f.Fix) == 0 {
				t.Errorf("check %q, next steps %q, fix %q", f.Check, f.NextSteps, f.Fix)
			}
			// The holder is a Go test binary: known from its build info.
			if p.Runtime != "go" || !strings.Contains(p.RuntimeEvidence, "Go binary") {
				t.Errorf("runtime %q (%q), want go from the build info", p.Runtime, p.RuntimeEvidence)
			}
			if steps := strings.Join(f.NextSteps, "\n"); !strings.Contains(steps, "goroutine?debug=2") || !strings.Contains(steps, "kill -QUIT "+strconv.Itoa(h.PID)) || !strings.Contains(steps, "EXITS") {
				t.Errorf("Go next steps:\n%s", steps)
			}
			if tt.cause != "missing-close" && (p.Threads == nil || p.Threads.Total < 1) {
				t.Errorf("no thread states beside %s", tt.cause)
			}
			if tt.cause == "not-accepted" && (p.NotAccepted != tt.count || !strings.Contains(ev, fmt.Sprintf("listener %s has %d connections queued", h.Listen, tt.count))) {
				t.Errorf("not accepted %d, evidence:\n%s", p.NotAccepted, ev)
			}

			// The narrative and the report say the same.
			r = run(t, nil, "explain", strconv.Itoa(h.PID))
			for _, want := range []string{"Process:", "Runtime:      go", "CLOSE_WAIT:   " + strconv.Itoa(tt.count) + " sockets", "Findings:", tt.cause + ":", "Check:", f.Check, "Next steps:", "Fix:"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("explain text lacks %q:\n%s", want, r.stdout)
				}
			}
			r = run(t, nil, "--pid", strconv.Itoa(h.PID))
			if !strings.Contains(r.stdout, "✗ "+tt.cause+" (inbound on port "+strconv.Itoa(int(h.Listen.Port()))+")") {
				t.Errorf("report lacks the finding line:\n%s", r.stdout)
			}
			rep := reportJSON(t, run(t, nil, "--json", "--pid", strconv.Itoa(h.PID)))
			if jp := findProc(rep, h.PID); jp == nil || len(jp.Findings) != 1 || jp.Findings[0].Cause != tt.cause {
				t.Errorf("report --json findings: %+v", jp)
			}
		})
	}
}

// TestExplainPoolIdle runs a python3 client that keeps a pool of HTTP/1.1
// connections to a local server that closes idle connections after 1 s.
func TestExplainPoolIdle(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 for the pooled client")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") }),
		IdleTimeout: time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const conns = 8
	script := filepath.Join(t.TempDir(), "pool.py")
	os.WriteFile(script, []byte(`import http.client, sys
pool = [http.client.HTTPConnection("127.0.0.1", int(sys.argv[1])) for _ in range(int(sys.argv[2]))]
for c in pool:
    c.request("GET", "/ping")
    c.getresponse().read()
print("READY", flush=True)
sys.stdin.read()  # keep the pool until the test ends
`), 0o644)
	cmd := exec.Command(py, script, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), strconv.Itoa(conns))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "READY\n" {
		t.Fatalf("python client said %q", line)
	}
	// The server closes each connection after 1 s idle; wait for all of them.
	var p report.JSONProcess
	for i := 0; i < 20; i++ {
		time.Sleep(500 * time.Millisecond)
		p, _ = explainJSON(t, cmd.Process.Pid)
		if p.CloseWait == conns {
			break
		}
	}
	f := findCause(p, "pool-idle")
	if f == nil || len(p.Findings) != 1 {
		t.Fatalf("findings %v, want one pool-idle", causes(p))
	}
	server := netip.MustParseAddrPort(ln.Addr().String()).String()
	if f.Direction != "outbound" || f.Remote != server || f.Count != conns || f.LocalPort != 0 {
		t.Errorf("finding %+v; want outbound to %s, %d sockets", f, server, conns)
	}
	if f.RemoteIdleTimeoutSeconds < 0.9 || f.RemoteIdleTimeoutSeconds > 1.5 {
		t.Errorf("server idle timeout estimated %.3f s, want about 1 s", f.RemoteIdleTimeoutSeconds)
	}
	if !strings.Contains(strings.Join(f.Evidence, "\n"), "evict idle connections after less than") || !strings.Contains(f.Check, "dst "+server) {
		t.Errorf("evidence %q check %q", f.Evidence, f.Check)
	}
	if p.Runtime != "python" || !strings.Contains(strings.Join(f.NextSteps, "\n"), "py-spy dump --pid "+strconv.Itoa(cmd.Process.Pid)) ||
		!strings.Contains(strings.Join(f.Fix, "\n"), "urllib3") {
		t.Errorf("runtime %s (%s), steps %q, fix %q", p.Runtime, p.RuntimeEvidence, f.NextSteps, f.Fix)
	}
}

// TestExplainHealthyServerHasNoFinding: a server that closes on EOF leaves no CLOSE_WAIT.
func TestExplainHealthyServerHasNoFinding(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 for the healthy server")
	}
	script := filepath.Join(t.TempDir(), "healthy.py")
	os.WriteFile(script, []byte(`import socket, sys, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), __import__("os")._exit(0)), daemon=True).start()
while True:
    c, _ = s.accept()
    with c:
        while c.recv(4096):
            pass
`), 0o644)
	cmd := exec.Command(py, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("healthy server said %q", line)
	}
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("server did not close: %v", err) // its FIN arrived: its end left CLOSE_WAIT
		}
	}
	r := run(t, nil, "explain", strconv.Itoa(cmd.Process.Pid))
	if r.code != 0 || !strings.Contains(r.stdout, "holds no CLOSE_WAIT sockets") {
		t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	p, _ := explainJSON(t, cmd.Process.Pid)
	if p.CloseWait != 0 || len(p.Findings) != 0 || p.Runtime != "python" {
		t.Errorf("healthy server: close_wait %d findings %v runtime %s", p.CloseWait, causes(p), p.Runtime)
	}
}

// TestExplainWithoutPIDPicksTheWorst: with a holder far over the count
// threshold, closewait explain (no pid) explains a process that is at least
// as bad; with --count-warning low enough, this test's holder is critical.
func TestExplainWithoutPIDPicksTheWorst(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 12, FDLimit: 24})
	r := run(t, nil, "explain")
	if r.code == 3 || !strings.Contains(r.stdout, "The worst of ") || !strings.Contains(r.stdout, "Findings:") {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	var p report.JSONProcess
	if err := json.Unmarshal([]byte(run(t, nil, "explain", "--json").stdout), &p); err != nil || p.PID == 0 || len(p.Findings) == 0 {
		t.Errorf("explain --json without a pid: %v %+v", err, p)
	}
	if p.PID == h.PID && p.Status != "critical" {
		t.Errorf("holder at %d of %d fds explained as %s", 12, 24, p.Status)
	}
}

// TestSampleMeasuresGrowthAndETA: a holder leaking one socket per 100 ms
// under a 256-fd limit grows about 600/min and runs out of fds in seconds.
func TestSampleMeasuresGrowthAndETA(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{LeakEvery: 100 * time.Millisecond, LeakMax: 400, FDLimit: 256})
	h.Next("LEAK")
	r := run(t, nil, "--json", "--sample", "1s", "--pid", strconv.Itoa(h.PID))
	rep := reportJSON(t, r)
	p := findProc(rep, h.PID)
	if p == nil {
		t.Fatalf("leaking holder not in the report:\n%s", r.stdout)
	}
	if rep.Summary.SampleSeconds < 1 || p.Growth == nil || p.GrowthPerMin == nil || p.EnteredPerMin == nil || p.LeftPerMin == nil {
		t.Fatalf("no growth: sample %v, process %+v", rep.Summary.SampleSeconds, p)
	}
	if p.Growth.Entered < 3 || p.Growth.Left != 0 || !p.Growth.Growing || *p.GrowthPerMin < 150 || *p.GrowthPerMin > 1200 {
		t.Errorf("growth %+v, %v/min; want about 10 entered in 1s, none left, ~600/min", *p.Growth, *p.GrowthPerMin)
	}
	if p.FDExhaustionETA == nil || *p.FDExhaustionETA <= 0 || *p.FDExhaustionETA > 120 {
		t.Errorf("fd exhaustion ETA %v s, want under 2 min at ~600/min with ~240 fds free", p.FDExhaustionETA)
	}
	g := findCause(*p, "growing")
	if g == nil || !strings.Contains(strings.Join(g.Evidence, "\n"), "reaches the fd limit") {
		t.Errorf("findings %v, want a growing finding naming the fd limit", causes(*p))
	}
	if r.code != 2 || p.Status != "critical" {
		t.Errorf("exit %d status %s, want 2 critical (fd limit in under %s)", r.code, p.Status, "15m")
	}
	// explain --sample says the same in words.
	r = run(t, nil, "explain", strconv.Itoa(h.PID), "--sample", "1s")
	if !strings.Contains(r.stdout, "fd limit reached in about") || !strings.Contains(r.stdout, "growing:") {
		t.Errorf("explain --sample:\n%s", r.stdout)
	}
}

// TestExplainJavaRuntime runs a tiny Java server that reads to EOF and never closes.
func TestExplainJavaRuntime(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		t.Skip("needs java (a JDK: .ci/run installs default-jdk-headless)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Hold.java"), []byte(`import java.io.*;
import java.net.*;
import java.util.*;

public class Hold {
    public static void main(String[] args) throws Exception {
        ServerSocket ss = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
        System.out.println(ss.getLocalPort());
        System.out.flush();
        Thread parent = new Thread(() -> { try { while (System.in.read() >= 0) {} } catch (IOException e) {} System.exit(0); });
        parent.setDaemon(true);
        parent.start();
        List<Socket> held = new ArrayList<>();
        while (true) {
            Socket s = ss.accept();
            InputStream in = s.getInputStream();
            while (in.read() >= 0) {}
            held.add(s); // the bug: read to EOF, never closed
        }
    }
}
`), 0o644)
	cmd := exec.Command(java, "-Xmx64m", "-XX:TieredStopAtLevel=1", filepath.Join(dir, "Hold.java"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("java server said %q", line)
	}
	const n = 6
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).CloseWrite()
		if err := cwtest.WaitState(c.(*net.TCPConn), unix.BPF_TCP_FIN_WAIT2, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var p report.JSONProcess
	for i := 0; i < 20; i++ { // the accept loop reads each connection to EOF in turn
		p, _ = explainJSON(t, cmd.Process.Pid)
		if f := findCause(p, "missing-close"); f != nil && f.Count == n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p.Runtime != "java" || !strings.Contains(p.RuntimeEvidence, "libjvm.so") {
		t.Errorf("runtime %q (%q), want java from libjvm.so", p.Runtime, p.RuntimeEvidence)
	}
	f := findCause(p, "missing-close")
	if f == nil || f.Count != n || f.LocalPort != uint16(port) {
		t.Fatalf("findings %v, want missing-close for %d sockets on port %d", causes(p), n, port)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if steps := strings.Join(f.NextSteps, "\n"); !strings.Contains(steps, "jcmd "+pid+" Thread.print") || !strings.Contains(steps, "jstack -l "+pid) {
		t.Errorf("java next steps:\n%s", steps)
	}
	if !strings.Contains(strings.Join(f.Fix, "\n"), "try-with-resources") {
		t.Errorf("java fix %q", f.Fix)
	}
}

// TestExplainUnprivilegedSaysWhatItCannotSee: nobody cannot read root's fds,
// so explain must not claim that root's holder holds no CLOSE_WAIT sockets.
func TestExplainUnprivilegedSaysWhatItCannotSee(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 6})
	own := cwtest.Start(t, cwtest.Spec{ReadEOF: 6, UID: 65534, GID: 65534})
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r := run(t, nobody, "explain", strconv.Itoa(h.PID))
	if r.code != 3 || !strings.Contains(r.stderr, "CAP_SYS_PTRACE") || strings.Contains(r.stdout, "holds no CLOSE_WAIT") {
		t.Errorf("nobody explaining root's holder: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nobody, "explain", strconv.Itoa(own.PID), "--json")
	var p report.JSONProcess
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.CloseWait != 6 || findCause(p, "missing-close") == nil {
		t.Errorf("nobody explaining its own holder: %v %+v\n%s", err, p, r.stderr)
	}
}

func TestExplainBadPIDs(t *testing.T) {
	r := run(t, nil, "explain", "999999999")
	if r.code != 3 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "no process 999999999") {
		t.Errorf("unknown pid: exit %d, stderr %q; want 3 and one line", r.code, r.stderr)
	}
	for _, args := range [][]string{{"explain", "abc"}, {"explain", "-5"}, {"explain", "0"}, {"explain", "1", "--sample", "-1s"}, {"explain", "1", "2"}} {
		r := run(t, nil, args...)
		if r.code != 3 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.HasPrefix(r.stderr, "closewait: ") {
			t.Errorf("%v: exit %d, stderr %q; want 3 and one line", args, r.code, r.stderr)
		}
	}
	// A process without CLOSE_WAIT: the test itself.
	r = run(t, nil, "explain", strconv.Itoa(os.Getpid()))
	if r.code != 0 || !strings.Contains(r.stdout, "holds no CLOSE_WAIT sockets") {
		t.Errorf("pid without CLOSE_WAIT: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
