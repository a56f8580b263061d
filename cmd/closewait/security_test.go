package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/closewait/closewait/internal/cwtest"
)

// Secrets on the holder's command line (issue 16 item 18): none of them may
// appear in anything closewait prints or serves.
var secretArgs = []string{"--password=hunter2", "postgres://app:s3cr3tpw@db.invalid:5432/orders", "API_TOKEN=tok3nvalue"}

var secretValues = []string{"hunter2", "s3cr3tpw", "tok3nvalue"}

func assertNoSecret(t *testing.T, where, body string) {
	t.Helper()
	for _, s := range secretValues {
		if strings.Contains(body, s) {
			t.Errorf("%s shows the secret %q", where, s)
		}
	}
}

// TestSecretsRedactedEverywhere (issue 16 item 18): a process started with
// --password=hunter2, a URL with credentials and X_TOKEN=… on its command
// line: the secrets appear in no output of the report (text and JSON),
// explain, watch, nor in any response of the agent (API, dashboard,
// metrics); --show-secrets shows them.
func TestSecretsRedactedEverywhere(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2, Args: secretArgs})
	pid := strconv.Itoa(h.PID)

	rep := reportJSON(t, run(t, nil, "--json", "--pid", pid))
	p := findProc(rep, h.PID)
	if p == nil {
		t.Fatalf("holder %d not in the report", h.PID)
	}
	for _, want := range []string{"--password=***", "postgres://app:***@db.invalid:5432/orders", "API_TOKEN=***"} {
		if !strings.Contains(p.Cmdline, want) {
			t.Errorf("cmdline %q lacks the redacted %q", p.Cmdline, want)
		}
	}
	for _, args := range [][]string{
		{"--pid", pid, "--color", "never"},
		{"--json", "--pid", pid},
		{"explain", pid, "--color", "never"},
		{"explain", pid, "--json"},
		{"watch", "--plain", "--count", "1", "--pid", pid},
		{"watch", "--json", "--count", "1", "--pid", pid},
		{"check", "--json", "--pid", pid},
	} {
		r := run(t, nil, args...)
		assertNoSecret(t, "closewait "+strings.Join(args, " "), r.stdout+r.stderr)
	}
	if r := run(t, nil, "explain", pid, "--json", "--show-secrets"); !strings.Contains(r.stdout, "hunter2") {
		t.Errorf("explain --show-secrets does not show the command line as it is: %.300s", r.stdout)
	}

	url, _, _ := startAgent(t, nil, "--interval", "1s", "--top", "1000")
	waitForProcess(t, url, h.PID)
	for _, path := range []string{"/api/v1/snapshot", "/api/v1/processes/" + pid, "/", "/metrics", "/api/v1/history?pid=" + pid} {
		code, body := httpGet(t, url+path)
		if code != 200 {
			t.Errorf("%s: %d %.200s", path, code, body)
		}
		assertNoSecret(t, "agent "+path, body)
	}
	code, body := httpGet(t, url+"/api/v1/processes/"+pid)
	if code != 200 || !strings.Contains(body, "--password=***") {
		t.Errorf("/api/v1/processes/%s does not show the redacted command line: %.300s", pid, body)
	}
}

// waitForProcess waits (bounded) until the agent's snapshot lists pid.
func waitForProcess(t *testing.T, url string, pid int) {
	t.Helper()
	for i := 0; i < 120; i++ {
		if code, _ := httpGet(t, url+"/api/v1/processes/"+strconv.Itoa(pid)); code == 200 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the agent never listed process %d", pid)
}

// writeTLS writes a self-signed certificate for 127.0.0.1 and its key.
func writeTLS(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "closewait test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// curl runs curl with args and returns the HTTP status it printed (000 when
// no HTTP answer came).
func curl(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := exec.Command("curl", append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"}, args...)...).Output()
	return strings.TrimSpace(string(out))
}

// TestAgentWebConfigTLSAndBasicAuth (issue 16 item 18): with
// --web.config.file naming a certificate and a bcrypt user, every path
// needs TLS and the password: checked with curl and with a real Prometheus
// whose scrape config uses them.
func TestAgentWebConfigTLSAndBasicAuth(t *testing.T) {
	for _, tool := range []string{"curl", "prometheus"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages curl and prometheus; .ci/run installs them)", tool)
		}
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cert, key := writeTLS(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n", cert, key, hash)), 0o644)

	if r := run(t, nil, "agent", "--listen", "127.0.0.1:0", "--web.config.file", filepath.Join(dir, "missing.yml")); r.code != 3 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "--web.config.file") {
		t.Errorf("missing web config: exit %d, stderr %q; want 3 and one line naming the flag", r.code, r.stderr)
	}

	url, _, _ := startAgent(t, nil, "--interval", "1s", "--web.config.file", webConfig)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("agent with a TLS web config announces %s", url)
	}
	plain := "http://" + strings.TrimPrefix(url, "https://")
	for i := 0; i < 120 && curl(t, "--cacert", cert, "-u", "prom:scrape-pw", url+"/healthz") != "200"; i++ {
		time.Sleep(500 * time.Millisecond) // bounded wait for the first scan
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"TLS and password", []string{"--cacert", cert, "-u", "prom:scrape-pw", url + "/metrics"}, "200"},
		{"TLS and password, healthz", []string{"--cacert", cert, "-u", "prom:scrape-pw", url + "/healthz"}, "200"},
		{"TLS and password, API", []string{"--cacert", cert, "-u", "prom:scrape-pw", url + "/api/v1/snapshot"}, "200"},
		{"no password", []string{"--cacert", cert, url + "/metrics"}, "401"},
		{"no password, dashboard", []string{"--cacert", cert, url + "/"}, "401"},
		{"no password, API", []string{"--cacert", cert, url + "/api/v1/snapshot"}, "401"},
		{"wrong password", []string{"--cacert", cert, "-u", "prom:nope", url + "/metrics"}, "401"},
		{"unknown user", []string{"--cacert", cert, "-u", "root:scrape-pw", url + "/healthz"}, "401"},
		{"plain HTTP", []string{"-u", "prom:scrape-pw", plain + "/metrics"}, "400"},
		{"untrusted certificate", []string{"-u", "prom:scrape-pw", url + "/metrics"}, "000"},
	} {
		if got := curl(t, c.args...); got != c.want {
			t.Errorf("%s: curl says %s, want %s", c.name, got, c.want)
		}
	}

	// A real Prometheus, on loopback, scraping with the same credentials.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := ln.Addr().String()
	ln.Close()
	target := strings.TrimPrefix(url, "https://")
	promConfig := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promConfig, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: closewait
    scheme: https
    tls_config:
      ca_file: %s
    basic_auth:
      username: prom
      password: scrape-pw
    static_configs:
      - targets: ['%s']
  - job_name: closewait-noauth
    scheme: https
    tls_config:
      ca_file: %s
    static_configs:
      - targets: ['%s']
`, cert, target, cert, target)), 0o644)
	prom := exec.Command("prometheus", "--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promErr strings.Builder
	prom.Stderr = &promErr
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(prom.Process.Pid, syscall.SIGKILL)
		_ = prom.Wait()
	})
	type promTarget struct {
		Labels    map[string]string `json:"labels"`
		Health    string            `json:"health"`
		LastError string            `json:"lastError"`
	}
	var health map[string]promTarget
	for i := 0; i < 120; i++ { // bounded: Prometheus starts, then scrapes every second
		time.Sleep(500 * time.Millisecond)
		code, body := promGet("http://" + promAddr + "/api/v1/targets")
		if code != 200 {
			continue
		}
		var resp struct {
			Data struct {
				ActiveTargets []promTarget `json:"activeTargets"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(body), &resp) != nil {
			continue
		}
		health = map[string]promTarget{}
		for _, tg := range resp.Data.ActiveTargets {
			if tg.Health != "unknown" {
				health[tg.Labels["job"]] = tg
			}
		}
		if len(health) == 2 {
			break
		}
	}
	if health["closewait"].Health != "up" {
		t.Errorf("Prometheus scraping with TLS and basic auth: %+v (prometheus stderr: %.500s)", health["closewait"], promErr.String())
	}
	if tg := health["closewait-noauth"]; tg.Health != "down" || !strings.Contains(tg.LastError, "401") {
		t.Errorf("Prometheus scraping without the password: %+v, want down with 401", tg)
	}
}

// promGet is a GET that returns 0 when nothing answers yet.
func promGet(url string) (int, string) {
	out, err := exec.Command("curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url).Output()
	if err != nil {
		return 0, ""
	}
	s := string(out)
	i := strings.LastIndex(s, "\n")
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:i]
}

// TestAgentListenBindsWhatWasAsked (issue 16 item 7): --listen 0.0.0.0:PORT
// serves IPv4 only, [::]:PORT both families, [::1]:PORT IPv6 only. Run in a
// network namespace of the test's own, so nothing is reachable from outside.
func TestAgentListenBindsWhatWasAsked(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (Debian package curl)")
	}
	ns := cwtest.NewNetNS(t)
	for _, c := range []struct {
		listen     string
		ipv4, ipv6 bool
	}{
		{"0.0.0.0:10717", true, false},
		{"[::]:10717", true, true},
		{"[::1]:10717", false, true},
		{"127.0.0.1:10717", true, false},
	} {
		t.Run(c.listen, func(t *testing.T) {
			cmd := exec.Command("ip", "netns", "exec", ns, binary, "agent", "--interval", "1h", "--listen", c.listen)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				_ = cmd.Wait()
			}()
			get := func(host string) string {
				return strings.TrimSpace(runIn(ns, "curl", "-g", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://"+host+":10717/healthz"))
			}
			for i := 0; i < 100 && !strings.Contains(out.String(), "listening on"); i++ {
				time.Sleep(100 * time.Millisecond)
			}
			for i := 0; i < 100 && get(map[bool]string{true: "127.0.0.1", false: "[::1]"}[c.ipv4]) == "000"; i++ {
				time.Sleep(100 * time.Millisecond) // until the first scan answers
			}
			if got := get("127.0.0.1") != "000"; got != c.ipv4 {
				t.Errorf("--listen %s: served on 127.0.0.1: %v, want %v (%s)", c.listen, got, c.ipv4, out.String())
			}
			if got := get("[::1]") != "000"; got != c.ipv6 {
				t.Errorf("--listen %s: served on [::1]: %v, want %v (%s)", c.listen, got, c.ipv6, out.String())
			}
		})
	}
}

// runIn runs a command inside a network namespace and returns its stdout.
func runIn(ns string, args ...string) string {
	out, _ := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).Output()
	return string(out)
}
