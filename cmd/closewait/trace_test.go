package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/origins"
)

// tracing is a `closewait trace` running in the background.
type tracing struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
}

// startTrace starts closewait trace with args and waits until it traces,
// skipping the test where eBPF tracing cannot run.
func startTrace(t *testing.T, args ...string) *tracing {
	t.Helper()
	return startTracing(t, append([]string{"trace"}, args...)...)
}

// startTracing starts closewait with args (a command that traces) and waits
// until it says it traces.
func startTracing(t *testing.T, args ...string) *tracing {
	t.Helper()
	return startTracingAs(t, nil, args...)
}

// startTracingAs is startTracing with the process attributes attr (a user,
// capabilities); nil runs it as this test.
func startTracingAs(t *testing.T, attr *syscall.SysProcAttr, args ...string) *tracing {
	t.Helper()
	tr := &tracing{cmd: exec.Command(binary, args...)}
	tr.cmd.SysProcAttr = attr
	tr.cmd.Stdout = &tr.out
	pr, pw := io.Pipe()
	tr.cmd.Stderr = pw
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if tr.cmd.ProcessState == nil {
			tr.cmd.Process.Kill()
			tr.cmd.Wait()
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { tr.cmd.Wait(); pw.Close() }()
	select {
	case l, ok := <-lines:
		if ok && strings.Contains(l, "tracing socket creation") {
			go func() {
				for l := range lines {
					tr.errb.WriteString(l + "\n")
				}
			}()
			return tr
		}
		var rest strings.Builder
		rest.WriteString(l + "\n")
		for l := range lines {
			rest.WriteString(l + "\n")
		}
		if !cwtest.EBPFExpected() {
			t.Skipf("closewait trace cannot run here (needs root, BTF and CAP_BPF+CAP_PERFMON): %s", rest.String())
		}
		t.Fatalf("closewait trace did not start: %s", rest.String())
	case <-time.After(30 * time.Second):
		t.Fatal("closewait trace did not start within 30s")
	}
	return nil
}

// stop ends the trace with Ctrl-C (SIGINT) and returns its report.
func (tr *tracing) stop(t *testing.T) origins.Report {
	t.Helper()
	if code := tr.interrupt(t); code != 0 {
		t.Fatalf("closewait trace: exit %d: %s", code, tr.errb.String())
	}
	var rep origins.Report
	if err := json.Unmarshal(tr.out.Bytes(), &rep); err != nil {
		t.Fatalf("trace output is not JSON (%v):\n%s", err, tr.out.String())
	}
	return rep
}

// interrupt sends SIGINT and returns the exit code.
func (tr *tracing) interrupt(t *testing.T) int {
	t.Helper()
	tr.cmd.Process.Signal(syscall.SIGINT)
	deadline := time.Now().Add(30 * time.Second)
	for tr.cmd.ProcessState == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if tr.cmd.ProcessState == nil {
		t.Fatal("closewait did not end within 30s of SIGINT")
	}
	return tr.cmd.ProcessState.ExitCode()
}

// closingServer accepts connections on loopback and closes each at once,
// so that the client's end goes to CLOSE_WAIT unless the client closes it.
func closingServer(t *testing.T) (addr string, accepted chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	return ln.Addr().String(), accepted
}

// lineOf returns the 1-based line of src holding marker.
func lineOf(t *testing.T, src, marker string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("no %q in the source", marker)
	return 0
}

// origin returns the origin of pid whose first frame named fn... is fn.
func originOf(rep origins.Report, pid int, fn string) *origins.Origin {
	for i, o := range rep.Origins {
		if o.PID != pid {
			continue
		}
		for _, f := range o.Frames {
			if f.Function == fn {
				return &rep.Origins[i]
			}
		}
	}
	return nil
}

const goLeaker = `package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
)

var held []net.Conn

func leakyDial(addr string) {
	c, err := net.Dial("tcp4", addr) // LEAK SITE
	if err != nil {
		panic(err)
	}
	held = append(held, c) // the bug: never closed
}

func sometimesDial(addr string, keep bool) {
	c, err := net.Dial("tcp4", addr) // SOMETIMES SITE
	if err != nil {
		panic(err)
	}
	if keep {
		held = append(held, c)
		return
	}
	c.Close()
}

func main() {
	addr := os.Args[1]
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		switch in.Text() {
		case "leak":
			leakyDial(addr)
		case "keep", "close": // one call site: one stack for both
			sometimesDial(addr, in.Text() == "keep")
		}
		fmt.Println("ok")
	}
}
`

// child is a test program driven line by line on stdin.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	return startChildCmd(t, exec.Command(bin, args...))
}

// startChildCmd is startChild for a command already made (its directory or
// environment set).
func startChildCmd(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	in, _ := cmd.StdinPipe()
	c := startCmd(t, cmd)
	c.in = in
	t.Cleanup(func() { in.Close() })
	c.expect(t, "ready")
	return c
}

// startCmd starts cmd, killed with the test binary and by its pid when the
// test ends (its perf map, if it wrote one, removed), reading its stdout
// line by line.
func startCmd(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); os.Remove(fmt.Sprintf("/tmp/perf-%d.map", pid)) })
	return &child{cmd: cmd, lines: bufio.NewScanner(out)}
}

func (c *child) expect(t *testing.T, word string) {
	t.Helper()
	if !c.lines.Scan() || c.lines.Text() != word {
		t.Fatalf("child said %q (%v), want %q", c.lines.Text(), c.lines.Err(), word)
	}
}

// halfCloseTo dials the child's server at 127.0.0.1:port n times, half-closes
// each connection (closed when the test ends) and waits for the server to
// say "accepted": it read to EOF, so its end is in CLOSE_WAIT.
func (c *child) halfCloseTo(t *testing.T, port string, n int) {
	t.Helper()
	for range n {
		conn, err := net.Dial("tcp4", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.(*net.TCPConn).CloseWrite()
		c.expect(t, "accepted")
	}
}

func (c *child) do(t *testing.T, cmd string, n int) {
	t.Helper()
	for range n {
		fmt.Fprintln(c.in, cmd)
		c.expect(t, "ok")
	}
}

// TestTraceGoLeakyDial: a Go program whose leakyDial never closes what it
// dials. The top origin of its CLOSE_WAIT sockets names main.leakyDial at
// the line of its net.Dial, with the right count and nothing closed; a
// second function that leaks some of its sockets shows both counts. The
// compiler inlines leakyDial into main.main: the frame comes from the
// inline tree. The same from a stripped binary (-ldflags=-s -w): the
// pclntab stays.
func TestTraceGoLeakyDial(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{{"unstripped", nil}, {"stripped", []string{"-ldflags=-s -w"}}} {
		t.Run(tc.name, func(t *testing.T) { testTraceGo(t, tc.flags) })
	}
}

func testTraceGo(t *testing.T, flags []string) {
	bin, src := buildGo(t, flags...)
	addr, accepted := closingServer(t)
	c := startChild(t, bin, addr)
	tr := startTrace(t, "--pid", fmt.Sprint(c.cmd.Process.Pid), "--duration", "2m", "--json")
	const leaks, keeps, closes = 5, 2, 4
	c.do(t, "leak", leaks)
	c.do(t, "keep", keeps)
	c.do(t, "close", closes)
	for range leaks + keeps + closes {
		<-accepted // the server closed it: the child's end is in CLOSE_WAIT or closed
	}
	rep := tr.stop(t)

	pid := c.cmd.Process.Pid
	if len(rep.Origins) == 0 || rep.Origins[0].PID != pid {
		t.Fatalf("origins %+v, want the leaker's first", rep.Origins)
	}
	top := rep.Origins[0]
	var site *struct {
		file string
		line int
	}
	for _, f := range top.Frames {
		if strings.HasPrefix(f.Function, "main.") {
			site = &struct {
				file string
				line int
			}{f.File, f.Line}
			if f.Function != "main.leakyDial" {
				t.Errorf("first main frame of the top origin is %s, want main.leakyDial", f.Function)
			}
			break
		}
	}
	if site == nil {
		t.Fatalf("top origin has no main.* frame: %+v", top.Frames)
	}
	if want := lineOf(t, goLeaker, "LEAK SITE"); site.file != src || site.line != want {
		t.Errorf("main.leakyDial at %s:%d, want %s:%d", site.file, site.line, src, want)
	}
	if top.Count != leaks || top.Closed != 0 || top.How != "connect" || top.Comm != "leaker" {
		t.Errorf("top origin: count %d closed %d how %s comm %q, want %d, 0, connect, leaker", top.Count, top.Closed, top.How, top.Comm, leaks)
	}
	if top.Cause == "" || top.OldestAgeSeconds <= 0 || top.OldestAgeSeconds > 120 {
		t.Errorf("top origin: cause %q, oldest %vs", top.Cause, top.OldestAgeSeconds)
	}
	if originOf(rep, pid, "main.main") == nil {
		t.Errorf("no origin reaches main.main: %+v", rep.Origins)
	}
	some := originOf(rep, pid, "main.sometimesDial")
	if some == nil {
		t.Fatalf("no origin names main.sometimesDial: %+v", rep.Origins)
	}
	if some.Count != keeps || some.Closed != closes {
		t.Errorf("main.sometimesDial: count %d closed %d, want %d and %d", some.Count, some.Closed, keeps, closes)
	}
	for _, f := range some.Frames {
		if f.Function == "main.sometimesDial" && f.Line != lineOf(t, goLeaker, "SOMETIMES SITE") {
			t.Errorf("main.sometimesDial at line %d, want %d", f.Line, lineOf(t, goLeaker, "SOMETIMES SITE"))
		}
	}
	if rep.Dropped != 0 {
		t.Errorf("dropped %d", rep.Dropped)
	}
}

const cLeaker = `#include <stdio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int held[4096];
static int nheld;

/* The accept loop forgets close(): every connection is read to EOF and kept. */
__attribute__((noinline)) static void serve(int ln) {
	for (;;) {
		int fd = accept(ln, NULL, NULL); /* LEAK SITE */
		if (fd < 0)
			return;
		char buf[64];
		while (read(fd, buf, sizeof buf) > 0) {
		}
		held[nheld++] = fd;
		printf("accepted\n");
		fflush(stdout);
	}
}

int main(void) {
	int ln = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	if (ln < 0 || bind(ln, (struct sockaddr *)&a, sizeof a) || listen(ln, 64) || getsockname(ln, (struct sockaddr *)&a, &l))
		return 1;
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	serve(ln);
	return 0;
}
`

// built caches the test programs, built once per test binary into the
// directory TestMain removes at the end.
var built struct {
	sync.Mutex
	m map[string][2]string
}

// once builds a program with make (into dir) the first time key is asked for.
func once(t *testing.T, key string, make func(dir string) (bin, src string)) (string, string) {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if r, ok := built.m[key]; ok {
		return r[0], r[1]
	}
	dir, err := os.MkdirTemp(filepath.Dir(binary), "prog-")
	if err != nil {
		t.Fatal(err)
	}
	bin, src := make(dir)
	if built.m == nil {
		built.m = map[string][2]string{}
	}
	built.m[key] = [2]string{bin, src}
	return bin, src
}

// buildGo builds goLeaker with the go build flags, once.
func buildGo(t *testing.T, flags ...string) (bin, src string) {
	t.Helper()
	return once(t, "go"+strings.Join(flags, " "), func(dir string) (string, string) {
		src := filepath.Join(dir, "main.go")
		os.WriteFile(src, []byte(goLeaker), 0o644)
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module leaker\n\ngo 1.22\n"), 0o644)
		bin := filepath.Join(dir, "leaker")
		build := exec.Command("go", append(append([]string{"build", "-o", bin}, flags...), ".")...)
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		return bin, src
	})
}

// buildC compiles src with gcc -fno-omit-frame-pointer -g, once, skipping
// without gcc.
func buildC(t *testing.T, src string) (bin, srcPath string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc (.ci/run installs it)")
	}
	return once(t, "c", func(dir string) (string, string) { return compileC(t, gcc, dir, src) })
}

func compileC(t *testing.T, gcc, dir, src string) (bin, srcPath string) {
	t.Helper()
	srcPath = filepath.Join(dir, "leaker.c")
	os.WriteFile(srcPath, []byte(src), 0o644)
	bin = filepath.Join(dir, "leaker-c")
	if out, err := exec.Command(gcc, "-O0", "-g", "-fno-omit-frame-pointer", "-o", bin, srcPath).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin, srcPath
}

// traceCServer runs the C server bin, traces it while n clients connect and
// half-close, and returns the report and the server's pid.
func traceCServer(t *testing.T, bin string, n int) (origins.Report, int) {
	t.Helper()
	cmd := exec.Command(bin)
	c := startCmd(t, cmd)
	if !c.lines.Scan() {
		t.Fatal("the C server did not print its port")
	}
	port := c.lines.Text()
	tr := startTrace(t, "--pid", fmt.Sprint(cmd.Process.Pid), "--duration", "2m", "--json")
	c.halfCloseTo(t, port, n)
	return tr.stop(t), cmd.Process.Pid
}

// TestTraceCAcceptLoop: a C server built with -fno-omit-frame-pointer -g
// whose accept loop forgets close(). The origin names serve() at the line
// of its accept() call: libc's accept keeps no frame pointer, so that frame
// comes from the return address on the stack, and the line from DWARF.
func TestTraceCAcceptLoop(t *testing.T) {
	needRoot(t)
	bin, src := buildC(t, cLeaker)
	const n = 4
	rep, pid := traceCServer(t, bin, n)
	o := originOf(rep, pid, "serve")
	if o == nil {
		t.Fatalf("no origin names serve(): %+v", rep.Origins)
	}
	if o.Count != n || o.How != "accept" || o.Cause != "missing-close" {
		t.Errorf("serve(): count %d how %s cause %s, want %d, accept, missing-close", o.Count, o.How, o.Cause, n)
	}
	var names []string
	for _, f := range o.Frames {
		names = append(names, f.Function)
		if f.Function == "serve" && (f.File != src || f.Line != lineOf(t, cLeaker, "LEAK SITE") || f.Module != bin) {
			t.Errorf("serve() at %s:%d in %s, want %s:%d in %s", f.File, f.Line, f.Module, src, lineOf(t, cLeaker, "LEAK SITE"), bin)
		}
	}
	if !slices.Contains(names, "main") {
		t.Errorf("frames %v: want serve's caller main too", names)
	}
}

// TestTraceNoSymbols: the same server, stripped. Its own frames cannot be
// named: each keeps module+offset (the offset of the call in serve(), as
// the unstripped binary's symbols confirm) and the origin says that debug
// symbols would name them.
func TestTraceNoSymbols(t *testing.T) {
	needRoot(t)
	bin, _ := buildC(t, cLeaker)
	stripped := bin + "-stripped"
	if out, err := exec.Command("strip", "-o", stripped, bin).CombinedOutput(); err != nil {
		t.Skipf("strip: %v %s", err, out)
	}
	const n = 3
	rep, pid := traceCServer(t, stripped, n)
	var o *origins.Origin
	for i := range rep.Origins {
		if rep.Origins[i].PID == pid {
			o = &rep.Origins[i]
		}
	}
	if o == nil || o.Count != n {
		t.Fatalf("origins %+v, want one of pid %d with %d sockets", rep.Origins, pid, n)
	}
	if !strings.Contains(o.Hint, "debug symbols would name "+filepath.Base(stripped)) {
		t.Errorf("hint %q, want it to say debug symbols would name %s", o.Hint, filepath.Base(stripped))
	}
	syms := symbolsOf(t, bin)
	var own []string
	for _, f := range o.Frames {
		if f.Module != stripped {
			continue
		}
		if f.Function != "" || f.Offset == 0 {
			t.Errorf("frame %+v of the stripped binary: want no name and an offset", f)
		}
		own = append(own, syms(f.Offset-1))
	}
	if len(own) < 2 || own[0] != "serve" || own[1] != "main" {
		t.Errorf("the stripped frames are, by the unstripped binary's symbols, %v; want serve, main", own)
	}
	if rep.UnsymbolisedFrames < 2 {
		t.Errorf("unsymbolised_frames %d, want at least 2", rep.UnsymbolisedFrames)
	}
}

// symbolsOf returns a function naming a file offset of the ELF file path
// from its symbol table.
func symbolsOf(t *testing.T, path string) func(off uint64) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	return func(off uint64) string {
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || off < p.Off || off >= p.Off+p.Filesz {
				continue
			}
			va := off - p.Off + p.Vaddr
			for _, s := range syms {
				if elf.ST_TYPE(s.Info) == elf.STT_FUNC && va >= s.Value && va < s.Value+s.Size {
					return s.Name
				}
			}
		}
		return "?"
	}
}

// TestExplainTraceAddsOrigins: explain PID --trace adds the origins to the
// explanation, in text and JSON.
func TestExplainTraceAddsOrigins(t *testing.T) {
	needRoot(t)
	bin, src := buildC(t, cLeaker)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			cmd := exec.Command(bin)
			c := startCmd(t, cmd)
			c.lines.Scan()
			port := c.lines.Text()
			args := []string{"explain", fmt.Sprint(cmd.Process.Pid), "--trace", "2m"}
			if format == "json" {
				args = append(args, "--json")
			}
			tr := startTracing(t, args...)
			c.halfCloseTo(t, port, 2)
			if code := tr.interrupt(t); code == 3 {
				t.Fatalf("explain --trace: exit 3: %s", tr.errb.String())
			}
			site := fmt.Sprintf("serve %s:%d", src, lineOf(t, cLeaker, "LEAK SITE"))
			if format == "text" {
				if !strings.Contains(tr.out.String(), "Origins (the code that made these sockets") || !strings.Contains(tr.out.String(), site) {
					t.Errorf("explain --trace output lacks the origins with %q:\n%s", site, tr.out.String())
				}
				return
			}
			var p struct {
				PID     int              `json:"pid"`
				Origins []origins.Origin `json:"origins"`
			}
			if err := json.Unmarshal(tr.out.Bytes(), &p); err != nil {
				t.Fatalf("not JSON (%v): %s", err, tr.out.String())
			}
			if p.PID != cmd.Process.Pid || originOf(origins.Report{Origins: p.Origins}, p.PID, "serve") == nil {
				t.Errorf("explain --json --trace: pid %d origins %+v", p.PID, p.Origins)
			}
		})
	}
}

// buildGoLeaker builds goLeaker and starts it against a closing server.
func buildGoLeaker(t *testing.T) (*child, string, chan struct{}) {
	t.Helper()
	bin, src := buildGo(t)
	addr, accepted := closingServer(t)
	return startChild(t, bin, addr), src, accepted
}

// TestAgentTraceServesOrigins: agent --trace starts tracing a process once
// a scan sees it holding CLOSE_WAIT sockets, and /api/v1/origins then names
// the code that makes its later ones. Without --trace the path says how to
// get it.
func TestAgentTraceServesOrigins(t *testing.T) {
	needRoot(t)
	c, src, accepted := buildGoLeaker(t)
	c.do(t, "leak", 1) // made before tracing: no stack
	<-accepted
	base, _, rest := startAgent(t, nil, "--trace", "--interval", "1s")
	pid := c.cmd.Process.Pid
	var rep origins.Report
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		code, body := httpGet(t, base+"/api/v1/origins")
		if code == http.StatusOK {
			json.Unmarshal([]byte(body), &rep)
			if rep.Recorded >= 0 && rep.Origins != nil {
				break
			}
		} else if code != http.StatusServiceUnavailable {
			if !cwtest.EBPFExpected() {
				t.Skipf("agent --trace cannot run here: %d %s", code, body)
			}
			t.Fatalf("GET /api/v1/origins: %d %s; stderr %s", code, body, rest.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The first scan has run: the leaker is traced now.
	const n = 3
	c.do(t, "leak", n)
	for range n {
		<-accepted
	}
	var o *origins.Origin
	for time.Now().Before(deadline) && (o == nil || o.Count != n) {
		time.Sleep(500 * time.Millisecond)
		code, body := httpGet(t, base+"/api/v1/origins")
		if code != http.StatusOK {
			continue
		}
		rep = origins.Report{}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("origins not JSON: %v: %s", err, body)
		}
		o = originOf(rep, pid, "main.leakyDial")
	}
	if o == nil || o.Count != n {
		t.Fatalf("origins %+v: want main.leakyDial of pid %d with %d sockets", rep.Origins, pid, n)
	}
	for _, f := range o.Frames {
		if f.Function == "main.leakyDial" && (f.File != src || f.Line != lineOf(t, goLeaker, "LEAK SITE")) {
			t.Errorf("main.leakyDial at %s:%d", f.File, f.Line)
		}
	}

	// The dashboard lists the top origins under the process's details (once
	// a scan has attributed the new sockets to it: poll).
	var page string
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var code int
		code, page = httpGet(t, fmt.Sprintf("%s/?pid=%d", base, pid))
		if code == http.StatusOK && strings.Contains(page, `<pre class="origins">`) && strings.Contains(page, "main.leakyDial") {
			break
		}
		if time.Now().After(end) {
			t.Errorf("dashboard of pid %d: %d, no origins block naming main.leakyDial after 20 s", pid, code)
			break
		}
	}

	plain, _, _ := startAgent(t, nil, "--interval", "1s")
	if code, body := httpGet(t, plain+"/api/v1/origins"); code != http.StatusNotFound || !strings.Contains(body, "--trace") {
		t.Errorf("agent without --trace: /api/v1/origins %d %s, want 404 naming --trace", code, body)
	}
}

const javaLeaker = `import java.io.*;
import java.net.*;
import java.util.*;

public class Hold {
    static List<Socket> held = new ArrayList<>();
    static void serve(ServerSocket ss) throws IOException {
        while (true) {
            Socket s = ss.accept();
            InputStream in = s.getInputStream();
            while (in.read() >= 0) {}
            held.add(s); // the bug: read to EOF, never closed
            System.out.println("accepted");
            System.out.flush();
        }
    }
    public static void main(String[] args) throws Exception {
        ServerSocket ss = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
        System.out.println(ss.getLocalPort());
        System.out.flush();
        serve(ss);
    }
}
`

// TestTraceJavaPerfMap: a JVM started with -XX:+PreserveFramePointer whose
// accept loop forgets close(); after jcmd PID Compiler.perfmap writes
// /tmp/perf-PID.map, the origin runs from libc's accept through the JDK's
// native accept into code named by the perf map (interpreted methods show
// as the JVM's "Interpreter" blob: the map names compiled code and stubs).
// Python 3.12's -X perf is tested the same way when a python3 ≥ 3.12 is
// present.
func TestTraceJavaPerfMap(t *testing.T) {
	needRoot(t)
	java, err1 := exec.LookPath("java")
	jcmd, err2 := exec.LookPath("jcmd")
	if err1 != nil || err2 != nil {
		t.Skip("needs java and jcmd (a JDK: .ci/run installs default-jdk-headless)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Hold.java"), []byte(javaLeaker), 0o644)
	cmd := exec.Command(java, "-XX:+PreserveFramePointer", "-Xmx64m", "-XX:TieredStopAtLevel=1", filepath.Join(dir, "Hold.java"))
	c := startCmd(t, cmd)
	pid := cmd.Process.Pid
	if !c.lines.Scan() {
		t.Fatal("the java server did not print its port")
	}
	port := c.lines.Text()
	if out, err := exec.Command(jcmd, fmt.Sprint(pid), "Compiler.perfmap").CombinedOutput(); err != nil {
		t.Skipf("jcmd Compiler.perfmap: %v: %s (this JDK cannot write a perf map of a running JVM)", err, out)
	}
	tr := startTrace(t, "--pid", fmt.Sprint(pid), "--duration", "2m", "--json")
	const n = 3
	c.halfCloseTo(t, port, n)
	rep := tr.stop(t)
	o := originOf(rep, pid, "Java_sun_nio_ch_Net_accept")
	if o == nil {
		t.Fatalf("no origin of the JVM runs through Java_sun_nio_ch_Net_accept: %+v", rep.Origins)
	}
	if o.Count != n || o.How != "accept" {
		t.Errorf("count %d how %s, want %d accept", o.Count, o.How, n)
	}
	mapped := 0
	for _, f := range o.Frames {
		if f.Module == fmt.Sprintf("/tmp/perf-%d.map", pid) && f.Function != "" {
			mapped++
		}
	}
	if mapped == 0 {
		t.Errorf("no frame named from /tmp/perf-%d.map: %+v", pid, o.Frames)
	}
}

// TestTracePythonPerfMap: a Python 3.12+ server whose accept loop keeps
// what it accepts, run with -X perf. Built with frame pointers, the origin
// names the Python function serve from the perf map; built without (as
// pyenv builds by default), the walk cannot get past the C frames, and the
// origin names sock_accept with the hint that the walk went astray.
// Without a Python 3.12 or later (python3, python3.1x on PATH, or under
// pyenv's versions) it says why it skips.
func TestTracePythonPerfMap(t *testing.T) {
	needRoot(t)
	py, fp := python312(t)
	t.Logf("%s, built with frame pointers: %v", py, fp)
	server := `import socket, sys
ln = socket.socket(); ln.bind(("127.0.0.1", 0)); ln.listen(50)
print(ln.getsockname()[1], flush=True)
held = []
def serve():
    while True:
        s, _ = ln.accept()
        while s.recv(64):
            pass
        held.append(s)  # the bug: never closed
        print("accepted", flush=True)
serve()
`
	cmd := exec.Command(py, "-X", "perf", "-c", server)
	c := startCmd(t, cmd)
	pid := cmd.Process.Pid
	c.lines.Scan()
	port := c.lines.Text()
	tr := startTrace(t, "--pid", fmt.Sprint(pid), "--duration", "2m", "--json")
	c.halfCloseTo(t, port, 2)
	rep := tr.stop(t)
	want := "serve" // py::serve, from the perf map
	if !fp {
		want = "sock_accept"
	}
	for _, o := range rep.Origins {
		for _, f := range o.Frames {
			if o.PID != pid || !strings.Contains(f.Function, want) {
				continue
			}
			if !fp && !strings.Contains(o.Hint, "went astray") {
				t.Errorf("%s, built without frame pointers: hint %q, want the walk said to have gone astray", py, o.Hint)
			}
			return
		}
	}
	t.Errorf("no origin of the Python server (%s, frame pointers %v) names %s: %+v", py, fp, want, rep.Origins)
}

// python312 finds a Python 3.12 or later (which has -X perf) and whether
// it was built with frame pointers, or skips the test.
func python312(t *testing.T) (path string, framePointers bool) {
	t.Helper()
	var found []string
	for _, name := range []string{"python3", "python3.14", "python3.13", "python3.12"} {
		if p, err := exec.LookPath(name); err == nil {
			found = append(found, p)
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		m, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", "3.1[2-9]*", "bin", "python3"))
		found = append(found, m...)
	}
	for _, p := range found {
		out, err := exec.Command(p, "-c", `import sys, sysconfig
print(sys.version_info >= (3, 12), "-fno-omit-frame-pointer" in (sysconfig.get_config_var("PY_CFLAGS") or ""))`).Output()
		if f := strings.Fields(string(out)); err == nil && len(f) == 2 && f[0] == "True" {
			return p, f[1] == "True"
		}
	}
	t.Skipf("no Python 3.12 or later (tried %v and pyenv's versions): -X perf (the perf map of Python frames) needs 3.12", found)
	return "", false
}

// nodeLeaker connects to the address in argv[2] for each line on stdin,
// with allowHalfOpen, and never ends nor destroys the socket: when the
// server closes, the socket stays in CLOSE_WAIT.
const nodeLeaker = `const net = require('net');
const [host, port] = process.argv[2].split(':');
const held = [];
function leakyConnect(done) {
  const s = net.connect({host, port: +port, allowHalfOpen: true}, done);
  s.on('end', () => {}); // the peer's FIN: never ended, never destroyed (the bug)
  held.push(s);
}
require('readline').createInterface({input: process.stdin}).on('line', () => leakyConnect(() => console.log('ok')));
console.log('ready');
`

// TestTraceNodePerfMap: a Node.js program whose sockets stay in CLOSE_WAIT.
// With --perf-basic-prof the functions the interpreter runs show only as
// V8's interpreter trampoline, and the hint says which flag names them;
// with --interpreted-frames-native-stack too, JavaScript frames are named
// from /tmp/perf-PID.map. (net.connect() connects on a later tick: the
// stack shows Node's internalConnect and the event-loop turn, not the
// function that called net.connect().)
func TestTraceNodePerfMap(t *testing.T) {
	needRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("needs node (Node.js) for --perf-basic-prof: .ci/run installs nodejs")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "leak.js")
	if err := os.WriteFile(script, []byte(nodeLeaker), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		named bool // JavaScript frames named from the perf map
	}{
		{"perf-basic-prof", []string{"--perf-basic-prof"}, false},
		{"interpreted-frames-native-stack", []string{"--perf-basic-prof", "--interpreted-frames-native-stack"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := closingServer(t)
			cmd := exec.Command(node, append(tc.flags, script, addr)...)
			cmd.Dir = dir // V8 writes its isolate-*-v8.log files into the working directory
			c := startChildCmd(t, cmd)
			pid := c.cmd.Process.Pid
			tr := startTrace(t, "--pid", fmt.Sprint(pid), "--duration", "2m", "--json")
			const n = 3
			c.do(t, "dial", n)
			for range n {
				<-accepted
			}
			rep := tr.stop(t)
			var o *origins.Origin
			for i := range rep.Origins {
				if rep.Origins[i].PID == pid {
					o = &rep.Origins[i]
				}
			}
			if o == nil {
				t.Fatalf("no origin of the node process: %+v", rep.Origins)
			}
			if o.Count != n || o.How != "connect" {
				t.Errorf("count %d how %s, want %d connect", o.Count, o.How, n)
			}
			mapped, trampoline := 0, false
			for _, f := range o.Frames {
				if f.Module == fmt.Sprintf("/tmp/perf-%d.map", pid) && strings.HasPrefix(f.Function, "JS:") {
					mapped++
				}
				trampoline = trampoline || f.Function == "Builtins_InterpreterEntryTrampoline"
			}
			if tc.named && mapped == 0 {
				t.Errorf("no JavaScript frame named from the perf map: %+v", o.Frames)
			}
			if !tc.named {
				if !trampoline {
					t.Errorf("no interpreter trampoline frame: %+v", o.Frames)
				}
				if !strings.Contains(o.Hint, "--interpreted-frames-native-stack") {
					t.Errorf("hint %q does not name --interpreted-frames-native-stack", o.Hint)
				}
			}
		})
	}
}

// TestTraceWithCapabilitiesOnly: as an unprivileged user holding only the
// capabilities deploy/ grants the agent (CAP_BPF, CAP_PERFMON,
// CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH), trace loads and runs its programs
// (the syscall program that reads the clocks among them) and names a root
// process's leak from its binary.
func TestTraceWithCapabilitiesOnly(t *testing.T) {
	needRoot(t)
	c, _, accepted := buildGoLeaker(t)
	pid := c.cmd.Process.Pid
	attr := &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH},
	}
	tr := startTracingAs(t, attr, "trace", "--pid", fmt.Sprint(pid), "--duration", "2m", "--json")
	const n = 2
	c.do(t, "leak", n)
	for range n {
		<-accepted
	}
	rep := tr.stop(t)
	o := originOf(rep, pid, "main.leakyDial")
	if o == nil || o.Count != n || !rep.AcceptsTraced {
		t.Fatalf("origin through main.leakyDial %+v, want %d sockets; accepts traced %v; report %+v", o, n, rep.AcceptsTraced, rep)
	}
}

// TestTraceBadInputAndPrivilege: without CAP_BPF+CAP_PERFMON (as nobody),
// trace says so in one line and exits 3; so does a pid that does not exist
// or a bad flag, and explain --trace without a pid.
func TestTraceBadInputAndPrivilege(t *testing.T) {
	needRoot(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	for _, tc := range []struct {
		name string
		cred *syscall.Credential
		args []string
		want string
	}{
		{"unprivileged", nobody, []string{"trace", "--pid", "1", "--duration", "1s"}, "CAP_BPF+CAP_PERFMON"},
		{"no such pid", nil, []string{"trace", "--pid", "999999999", "--duration", "1s"}, "no process 999999999"},
		{"zero duration", nil, []string{"trace", "--pid", "1", "--duration", "0s"}, "--duration"},
		{"explain without pid", nil, []string{"explain", "--trace", "1s"}, "--trace needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.cred, tc.args...)
			if r.code != 3 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("closewait %v: exit %d, stdout %q, stderr %q; want exit 3 and one line naming %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
}
