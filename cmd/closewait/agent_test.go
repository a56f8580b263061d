package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
)

// startAgent runs `closewait agent` with args and returns its base URL (read
// from the first line it prints) and the command. The process is killed by
// pid when the test ends if it is still running.
func startAgent(t *testing.T, cred *syscall.Credential, args ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"agent", "--listen", "127.0.0.1:0"}, args...)...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // still running: end it by its pid
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("agent printed no address (%v); stderr: %s", err, errb.String())
	}
	m := regexp.MustCompile(`listening on (https?://(?:127\.0\.0\.1|0\.0\.0\.0|\[::1?\]):\d+)/`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q does not name the bound address", line)
	}
	rest := &bytes.Buffer{}
	go io.Copy(rest, br)
	return m[1], cmd, rest
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAgentServesHolder runs the real binary: it prints its bound address,
// exports the holder's CLOSE_WAIT count under its pid, answers /healthz, and
// stops cleanly (exit 0) on SIGTERM.
func TestAgentServesHolder(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2, ReadEOF: 1})
	url, cmd, stdout := startAgent(t, nil, "--interval", "1s", "--top", "1000")
	want := `closewait_process_close_wait_sockets{comm="` // comm is the test binary's name
	sample := regexp.MustCompile(`(?m)^closewait_process_close_wait_sockets\{comm="[^"]*",pid="` + strconv.Itoa(h.PID) + `"\} (\d+)$`)
	var got string
	for i := 0; i < 120 && got == ""; i++ { // bounded: the first full scan may take seconds on a busy host
		code, body := httpGet(t, url+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		if m := sample.FindStringSubmatch(body); m != nil {
			got = m[1]
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got != "3" {
		t.Fatalf("%s...pid=%d} = %q, want 3", want, h.PID, got)
	}
	if code, body := httpGet(t, url+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, url+"/api/v1/processes/"+strconv.Itoa(h.PID)); code != 200 || !strings.Contains(body, `"close_wait": 3`) {
		t.Errorf("/api/v1/processes/%d: %d %.300s", h.PID, code, body)
	}
	if code := signalExit(t, cmd, syscall.SIGTERM); code != 0 {
		t.Errorf("agent exited %d after SIGTERM, want 0", code)
	}
	time.Sleep(100 * time.Millisecond) // let the copy of stdout finish
	if !strings.Contains(stdout.String(), "stopped") {
		t.Errorf("no 'stopped' line after SIGTERM: %q", stdout.String())
	}
}

// TestAgentBadFlags: bad flags end with exit 3 and one line naming the problem.
func TestAgentBadFlags(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--interval", "0s"}, "--interval must be at least 1s"},
		{[]string{"--interval", "soon"}, "--interval"},
		{[]string{"--top", "0"}, "--top must be between 1 and 1000"},
		{[]string{"--retention", "1s"}, "--retention must be between"},
		{[]string{"--listen", "localhost"}, "--listen \"localhost\": want host:port"},
		{[]string{"--listen", busy.Addr().String()}, "address already in use"},
		{[]string{"--fd-critical", "2"}, "--fd-critical must be a share between 0 and 1"},
		{[]string{"--history", "/proc/closewait-no/such.db"}, "--history"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := run(t, nil, append([]string{"agent"}, tt.args...)...)
			if r.code != 3 {
				t.Errorf("exit %d, want 3; stderr %q", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) || !strings.HasPrefix(r.stderr, "closewait: ") {
				t.Errorf("stderr %q, want a closewait: line containing %q", r.stderr, tt.want)
			}
		})
	}
}

// TestAgentUnprivileged: run as nobody, the agent still serves; another
// user's sockets count as unattributed and the snapshot says which
// capabilities would name their owner.
func TestAgentUnprivileged(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{Unread: 2}) // held by root
	url, _, _ := startAgent(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "--interval", "1s", "--top", "1000")
	var snap struct {
		Summary struct {
			Unattributed int `json:"unattributed_close_wait"`
		} `json:"summary"`
		Processes []struct {
			PID int `json:"pid"`
		} `json:"processes"`
		Notices []string `json:"notices"`
	}
	code, body := 0, ""
	for i := 0; i < 120; i++ { // bounded wait for the first scan
		if code, body = httpGet(t, url+"/api/v1/snapshot"); code == 200 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != 200 || json.Unmarshal([]byte(body), &snap) != nil {
		t.Fatalf("/api/v1/snapshot as nobody: %d %.300s", code, body)
	}
	for _, p := range snap.Processes {
		if p.PID == h.PID {
			t.Errorf("nobody attributed root's holder %d", h.PID)
		}
	}
	if snap.Summary.Unattributed < 2 || !strings.Contains(strings.Join(snap.Notices, " "), "CAP_SYS_PTRACE") {
		t.Errorf("unattributed %d (want >= 2), notices %q (want the capabilities named)", snap.Summary.Unattributed, snap.Notices)
	}
	if code, _ := httpGet(t, url+"/healthz"); code != 200 {
		t.Errorf("/healthz as nobody: %d", code)
	}
}

// TestAgentUnprivilegedSaysSoEveryScan (issue 16 item 5): an agent running
// as nobody cannot name the owners of root's sockets. It says so on every
// scan, the incremental ones included (which do not search again for the
// sockets it could not attribute): in the snapshot's notices and
// scan.partial/processes_denied, on /healthz, and in closewait_scan_partial.
// Agent and holder run in a network namespace of the test's own, so no other
// socket comes and goes to trigger a new search.
func TestAgentUnprivilegedSaysSoEveryScan(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"curl", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ns := cwtest.NewNetNS(t)
	cwtest.Start(t, cwtest.Spec{Unread: 2, NetNS: ns}) // held by root
	cmd := exec.Command("ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		binary, "agent", "--listen", "127.0.0.1:10717", "--interval", "1s", "--owners", "proc", "--feed", "off")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	get := func(path string) string {
		return runIn(ns, "curl", "-s", "--max-time", "5", "http://127.0.0.1:10717"+path)
	}
	var snap struct {
		Time    string   `json:"time"`
		Notices []string `json:"notices"`
		Scan    struct {
			Partial bool   `json:"partial"`
			Denied  int    `json:"processes_denied"`
			Owners  string `json:"owners"`
		} `json:"scan"`
	}
	seen := map[string]bool{}
	for i := 0; i < 120 && len(seen) < 4; i++ { // the first (full) scan and at least three incremental ones
		time.Sleep(300 * time.Millisecond)
		if json.Unmarshal([]byte(get("/api/v1/snapshot")), &snap) != nil || snap.Time == "" || seen[snap.Time] {
			continue
		}
		seen[snap.Time] = true
		if !strings.Contains(strings.Join(snap.Notices, " "), "have no owner shown") || !snap.Scan.Partial || snap.Scan.Denied == 0 {
			t.Errorf("scan %d at %s (owners %s): notices %q, partial %v, processes_denied %d: want the missing owners said", len(seen), snap.Time, snap.Scan.Owners, snap.Notices, snap.Scan.Partial, snap.Scan.Denied)
		}
		if body := get("/healthz"); !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, "note: ") || !strings.Contains(body, "CAP_SYS_PTRACE") {
			t.Errorf("scan %d: /healthz %q: want ok and a note naming the capabilities", len(seen), body)
		}
		if body := get("/metrics"); !regexp.MustCompile(`(?m)^closewait_scan_partial 1$`).MatchString(body) {
			t.Errorf("scan %d: no closewait_scan_partial 1 in /metrics", len(seen))
		}
	}
	if len(seen) < 4 {
		t.Fatalf("saw %d scans, want 4; agent output: %s", len(seen), out.String())
	}
}
