package deploy

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// veth links the test's network namespace to the host's with a /30 of
// 10.213.0.0/16 chosen at random (and not in use): it returns the host
// side's address and the namespace side's. The link goes with the namespace.
func veth(t *testing.T, ns string) (host, inside string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	out, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	third, fourth := int(b[0]), int(b[1])&^3%252
	host, inside = fmt.Sprintf("10.213.%d.%d", third, fourth+1), fmt.Sprintf("10.213.%d.%d", third, fourth+2)
	if strings.Contains(string(out), " 10.213.") {
		t.Skipf("10.213.0.0/16 is in use on this host: %s", strings.TrimSpace(string(out)))
	}
	name := "cwv" + hex.EncodeToString(b[:])[:8]
	peer := "cwp" + hex.EncodeToString(b[:])[:8]
	for _, args := range [][]string{
		{"link", "add", name, "type", "veth", "peer", "name", peer, "netns", ns},
		{"addr", "add", host + "/30", "dev", name},
		{"link", "set", name, "up"},
		{"-n", ns, "addr", "add", inside + "/30", "dev", peer},
		{"-n", ns, "link", "set", peer, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		if args[0] == "link" && args[1] == "add" {
			t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
		}
	}
	return host, inside
}

// upstream is a server that closes every connection after idle: the
// clients' pooled connections to it turn CLOSE_WAIT with only the FIN
// unread, the pool-idle cause, and tcp_info shows how long they sat idle.
func upstream(t *testing.T, addr string, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			time.AfterFunc(idle, func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

// buildCloseWait builds the closewait binary once for the test.
func buildCloseWait(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "closewait")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/closewait/closewait/cmd/closewait").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs cmd, ends it by its pid when the test ends, and returns
// the first stdout line matching re (its first group), waiting up to 30 s.
func startProcess(t *testing.T, cmd *exec.Cmd, re *regexp.Regexp) string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := startStopped(t, cmd, 10*time.Second, 2000)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case v := <-found:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not say %s within 30 s; stderr:\n%s", strings.Join(cmd.Args, " "), re, tail(stderr.String(), 2000))
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var listening = regexp.MustCompile(`listening on http://([^/]+)/`)

// freePort returns a loopback port free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) float(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample value %v: %v", s.Value, err)
	}
	return v
}

// query asks Prometheus's HTTP API for an instant vector.
func query(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s %s", q, err, r.Status, r.Error)
	}
	return r.Data.Result
}

// TestFleetPoolIdleUpstream runs the fleet question end to end: two agents
// (one on the host, one inside a network namespace the test creates, each
// reading only its own namespace) watch two clients whose pooled
// connections to one upstream that upstream closed after 1 s idle; a real
// Prometheus scrapes both agents with deploy/prometheus/closewait-rules.yml
// loaded; the recording rules, read from its HTTP API, name the upstream,
// its idle timeout estimated by both hosts' findings (about 1 s), its two
// client pools and their stranded sockets, and the per-client series say
// which host and pid each pool is.
func TestFleetPoolIdleUpstream(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("needs the Prometheus server (Debian package prometheus: apt-get install prometheus)")
	}
	ns := cwtest.NewNetNS(t) // skips without root or ip(8)
	hostAddr, nsAddr := veth(t, ns)
	const idle, dials = time.Second, 6 // more than a normal half-close (5)
	up := upstream(t, hostAddr+":0", idle)

	hostClient := cwtest.Start(t, cwtest.Spec{DialTo: up, Dial: dials})
	nsClient := cwtest.Start(t, cwtest.Spec{DialTo: up, Dial: dials, NetNS: ns})

	bin := buildCloseWait(t)
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	agentArgs := []string{"agent", "--interval", "1s", "--feed", "off"}
	hostAgent := startProcess(t, exec.Command(bin, append(agentArgs, "--listen", "127.0.0.1:0", "--netns", hostNS)...), listening)
	nsAgent := startProcess(t, exec.Command("ip", append([]string{"netns", "exec", ns, bin}, append(agentArgs, "--listen", nsAddr+":0", "--netns", ns)...)...), listening)

	dir := t.TempDir()
	rules, err := filepath.Abs("prometheus/closewait-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: closewait
    static_configs:
      - targets: [%q, %q]
`, rules, hostAgent, nsAgent)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freePort(t)
	pcmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--storage.tsdb.retention.time=1h",
		"--web.listen-address="+promAddr, "--log.level=warn")
	startPrometheus(t, pcmd)
	base := "http://" + promAddr

	// Wait for both targets to be scraped and the rules to have run over
	// both clients' pools.
	deadline := time.Now().Add(60 * time.Second)
	var clients []promSample
	for {
		clients = query(t, base, fmt.Sprintf(`remote:closewait_pool_idle_sockets:count{remote=%q}`, up))
		if len(clients) == 1 && clients[0].float(t) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the recording rule counts %v client pools of %s, want 2; up: %v; pool-idle series: %v", clients, up,
				query(t, base, "up"), query(t, base, "closewait_pool_idle_sockets"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if s := query(t, base, fmt.Sprintf(`remote:closewait_pool_idle_sockets:sum{remote=%q}`, up)); len(s) != 1 || s[0].float(t) != 2*dials {
		t.Errorf("stranded sockets of %s: %v, want %d", up, s, 2*dials)
	}
	// tcp_info's idle estimate: last data received (the connect) minus the
	// FIN's arrival, about the upstream's 1 s.
	if s := query(t, base, fmt.Sprintf(`remote:closewait_pool_idle_server_timeout_seconds:max{remote=%q}`, up)); len(s) != 1 || s[0].float(t) < 0.8 || s[0].float(t) > 3 {
		t.Errorf("estimated idle timeout of %s: %v, want about %v", up, s, idle)
	} else {
		t.Logf("upstream %s: idle timeout estimated at %v s (it closes after %v), 2 client pools", up, s[0].float(t), idle)
	}
	// Which host and which pid each pool is: the host's agent sees only the
	// host's client, the namespace's agent only its own.
	want := map[string]int{hostAgent: hostClient.PID, nsAgent: nsClient.PID}
	got := map[string]int{}
	for _, s := range query(t, base, fmt.Sprintf(`closewait_pool_idle_sockets{remote=%q}`, up)) {
		pid, _ := strconv.Atoi(s.Metric["pid"])
		if _, dup := got[s.Metric["instance"]]; dup {
			t.Errorf("instance %s reports two client pools of %s", s.Metric["instance"], up)
		}
		got[s.Metric["instance"]] = pid
		if v := s.float(t); v != dials {
			t.Errorf("%s pid %d: %v stranded sockets, want %d", s.Metric["instance"], pid, v, dials)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client pools by instance %v, want %v", got, want)
	}
}

// startStopped starts cmd and, when the test ends, stops it by its pid:
// SIGTERM, then SIGKILL after grace. A failed test logs the last keep bytes
// of its stderr, which it returns.
func startStopped(t *testing.T, cmd *exec.Cmd, grace time.Duration, keep int) *strings.Builder {
	t.Helper()
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), tail(stderr.String(), keep))
		}
	})
	return stderr
}

// startPrometheus starts the server, ends it by its pid when the test ends,
// and waits until it is ready.
func startPrometheus(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	stderr := startStopped(t, cmd, 15*time.Second, 3000)
	var addr string
	for _, a := range cmd.Args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			addr = v
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s: %v\n%s", err, tail(stderr.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
