package agent_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/report"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// serve starts the agent's real server on 127.0.0.1:0 and returns its base URL.
func serve(t *testing.T, a *agent.Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(a.Handler())
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func newAgent(t *testing.T, opt agent.Options) *agent.Agent {
	t.Helper()
	if opt.Thresholds == (diagnose.Thresholds{}) {
		opt.Thresholds = diagnose.DefaultThresholds
	}
	if opt.Interval == 0 {
		opt.Interval = time.Hour // the test drives Scan itself
	}
	if opt.TopN == 0 {
		opt.TopN = 1000 // the host's own CLOSE_WAIT holders must not push the test's out of the top
	}
	a, err := agent.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func scan(t *testing.T, a *agent.Agent) {
	t.Helper()
	if err := a.Scan(); err != nil {
		t.Fatalf("scan: %v", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var sampleRE = regexp.MustCompile(`^([a-z_]+)\{([^}]*)\} (\S+)$`)

// samples returns the values of a metric family by their pid label.
func samples(t *testing.T, body, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := sampleRE.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		pid := regexp.MustCompile(`pid="([^"]*)"`).FindStringSubmatch(m[2])
		if pid == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad sample %q", sc.Text())
		}
		out[pid[1]] = v
	}
	return out
}

func metric(t *testing.T, base, name string, pid int) (float64, bool) {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	v, ok := samples(t, body, name)[strconv.Itoa(pid)]
	return v, ok
}

// TestMetricsFollowLeakingChild: a real child leaks CLOSE_WAIT sockets; the
// agent's /metrics shows its pid with the right count, follows it as it
// leaks, and drops its series when it exits.
func TestMetricsFollowLeakingChild(t *testing.T) {
	const base, leaks = 2, 3
	h := cwtest.Start(t, cwtest.Spec{Unread: base, FDLimit: 64, LeakEvery: 700 * time.Millisecond, LeakMax: leaks})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)

	scan(t, a)
	first, ok := metric(t, url, "closewait_process_close_wait_sockets", h.PID)
	if !ok || first < base || first > base+leaks {
		t.Fatalf("first scan: close_wait_sockets{pid=%d} = %v (present %v), want %d..%d", h.PID, first, ok, base, base+leaks)
	}
	for i := 0; i < leaks; i++ {
		h.Next("LEAK")
	}
	scan(t, a)
	got, _ := metric(t, url, "closewait_process_close_wait_sockets", h.PID)
	if got != base+leaks {
		t.Errorf("after %d leaks: close_wait_sockets{pid=%d} = %v, want %d", leaks, h.PID, got, base+leaks)
	}
	// fd usage: the holder's open fds over its soft limit of 64.
	ratio, ok := metric(t, url, "closewait_process_fd_usage_ratio", h.PID)
	if !ok || ratio < float64(base+leaks)/64 || ratio > 1 {
		t.Errorf("fd_usage_ratio{pid=%d} = %v (present %v), want >= %v", h.PID, ratio, ok, float64(base+leaks)/64)
	}
	if _, ok := metric(t, url, "closewait_process_close_wait_oldest_age_seconds", h.PID); !ok {
		t.Errorf("no oldest_age_seconds for pid %d", h.PID)
	}
	// The history follows too.
	code, body := get(t, fmt.Sprintf("%s/api/v1/history?pid=%d", url, h.PID))
	var hist agent.HistoryJSON
	if code != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist.Points) != 2 {
		t.Fatalf("history: %d %s", code, body)
	}
	if hist.Points[1].CloseWait != base+leaks || hist.Points[1].FDLimit != 64 {
		t.Errorf("history last point %+v, want close_wait %d fd_limit 64", hist.Points[1], base+leaks)
	}
	// The snapshot API carries the JSON contract.
	code, body = get(t, url+"/api/v1/snapshot")
	var rep report.JSONReport
	if code != 200 || json.Unmarshal([]byte(body), &rep) != nil || rep.Version != 1 {
		t.Fatalf("snapshot: %d %.200s", code, body)
	}
	found := false
	for _, p := range rep.Processes {
		found = found || (p.PID == h.PID && p.CloseWait == base+leaks)
	}
	if !found {
		t.Errorf("snapshot has no process %d with %d CLOSE_WAIT", h.PID, base+leaks)
	}

	h.Stop()
	scan(t, a)
	if v, ok := metric(t, url, "closewait_process_close_wait_sockets", h.PID); ok {
		t.Errorf("pid %d exited but its series is still exported (%v)", h.PID, v)
	}
	if code, _ := get(t, fmt.Sprintf("%s/api/v1/processes/%d", url, h.PID)); code != 404 {
		t.Errorf("/api/v1/processes/%d after exit: %d, want 404", h.PID, code)
	}
}

// TestHostileRequests: bad methods, paths, query values and oversized
// headers get short 4xx answers, never 5xx or a panic.
func TestHostileRequests(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	if code, _ := get(t, url+"/api/v1/snapshot"); code != 503 {
		t.Errorf("snapshot before the first scan: %d, want 503", code)
	}
	if code, _ := get(t, url+"/healthz"); code != 503 {
		t.Errorf("healthz before the first scan: %d, want 503", code)
	}
	scan(t, a)
	pid := strconv.Itoa(h.PID)
	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
		body               string // substring of the answer
	}{
		{"dashboard", "GET", "/", nil, 200, "closewait"},
		{"head dashboard", "HEAD", "/", nil, 200, ""},
		{"metrics", "GET", "/metrics", nil, 200, "closewait_sockets"},
		{"healthz", "GET", "/healthz", nil, 200, "ok"},
		{"process", "GET", "/api/v1/processes/" + pid, nil, 200, `"pid": ` + pid},
		{"host history", "GET", "/api/v1/history?since=5m", nil, 200, `"points"`},
		{"static", "GET", "/static/uPlot.iife.min.js", nil, 200, "uPlot"},
		{"dashboard focus", "GET", "/?pid=" + pid, nil, 200, `id="p` + pid + `" open`},
		{"dashboard bad pid", "GET", "/?pid=0", nil, 400, "pid must be"},
		{"dashboard unknown param", "GET", "/?refresh=1", nil, 400, "unknown query parameter"},
		{"unknown path", "GET", "/admin", nil, 404, ""},
		{"unknown api", "GET", "/api/v1/destroy", nil, 404, ""},
		{"unknown static", "GET", "/static/evil.js", nil, 404, ""},
		{"post metrics", "POST", "/metrics", nil, 405, ""},
		{"delete snapshot", "DELETE", "/api/v1/snapshot", nil, 405, ""},
		{"put process", "PUT", "/api/v1/processes/" + pid, nil, 405, ""},
		{"pid not a number", "GET", "/api/v1/history?pid=abc", nil, 400, "pid must be a process id"},
		{"pid negative", "GET", "/api/v1/history?pid=-1", nil, 400, "pid must be a process id"},
		{"pid huge", "GET", "/api/v1/history?pid=99999999999999999999", nil, 400, "pid must be a process id"},
		{"pid twice", "GET", "/api/v1/history?pid=1&pid=2", nil, 400, "given 2 times"},
		{"pid unknown", "GET", "/api/v1/history?pid=4194303", nil, 404, "no history"},
		{"since garbage", "GET", "/api/v1/history?since=forever", nil, 400, "since must be a duration"},
		{"since negative", "GET", "/api/v1/history?since=-5m", nil, 400, "since must be a duration"},
		{"since too long", "GET", "/api/v1/history?since=100000h", nil, 400, "since must be a duration"},
		{"unknown param", "GET", "/api/v1/history?drop=1", nil, 400, "unknown query parameter"},
		{"bad escape", "GET", "/api/v1/history?pid=%zz", nil, 400, "bad query"},
		{"param on snapshot", "GET", "/api/v1/snapshot?x=1", nil, 400, "takes none"},
		{"param on metrics", "GET", "/metrics?x=1", nil, 400, "unknown query parameter"},
		{"process not a pid", "GET", "/api/v1/processes/1.5", nil, 400, "pid must be"},
		{"process holds none", "GET", "/api/v1/processes/4194303", nil, 404, "holds no CLOSE_WAIT"},
		{"huge header", "GET", "/metrics", map[string]string{"X-Junk": strings.Repeat("a", 64<<10)}, 431, ""},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s: %d, want %d (%.200s)", tt.method, tt.path, resp.StatusCode, tt.want, b)
			}
			if !strings.Contains(string(b), tt.body) {
				t.Errorf("%s %s: answer %.200q lacks %q", tt.method, tt.path, b, tt.body)
			}
			if tt.want == 405 && !strings.Contains(resp.Header.Get("Allow"), "GET") {
				t.Errorf("405 without Allow: GET (%q)", resp.Header.Get("Allow"))
			}
			if tt.want >= 400 && len(b) > 300 {
				t.Errorf("error answer is not short: %d bytes", len(b))
			}
		})
	}

	// OPTIONS * (net/http answers it with 200 unless told not to).
	oc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	fmt.Fprintf(oc, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	oc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(oc).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 4") {
		t.Errorf("OPTIONS * answered %q, want 4xx", line)
	}

	// A raw request that is not HTTP at all.
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "\x00\x01GARBAGE / HTTP/9.9\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Errorf("garbage request answered %q, want 400", line)
	}
}

// TestDashboardListsHolder: the page (without script) lists the holder with
// its count, a sparkline, a chart placeholder and a "show data" table.
func TestDashboardListsHolder(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 3})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	scan(t, a)
	scan(t, a)
	pid := strconv.Itoa(h.PID)
	code, body := get(t, url+"/")
	if code != 200 {
		t.Fatalf("/: %d", code)
	}
	// The row links to its details, on this page or, beyond the first ten, on /?pid=.
	if !strings.Contains(body, `<a href="#p`+pid+`">`+pid+`</a>`) && !strings.Contains(body, `<a href="/?pid=`+pid+`#p`+pid+`">`+pid+`</a>`) {
		t.Errorf("no link from the holder's row to its details")
	}
	code, body = get(t, url+"/?pid="+pid)
	if code != 200 {
		t.Fatalf("/?pid=%s: %d", pid, code)
	}
	for _, want := range []string{
		`<tr class="proc status-ok" data-pid="` + pid + `">`,
		`<details class="detail" id="p` + pid + `" open>`,
		`<svg class="spark status-ok"`, // grey: the holder is healthy
		`data-pid="` + pid + `" data-kind="cw"`,
		`aria-label="CLOSE_WAIT for `,
		`<summary>Show data</summary>`,
		`/static/uPlot.iife.min.js`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if strings.Contains(body, "https://") || strings.Contains(body, "http://") {
		t.Errorf("dashboard refers to an external URL (must work offline)")
	}
}

// TestHistoryStore: with a history file (closewait agent --history PATH) the
// API serves the holder's series from the store.
func TestHistoryStore(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2, FDLimit: 128})
	st, err := history.Open(filepath.Join(t.TempDir(), "h.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := newAgent(t, agent.Options{History: agent.FromStore(st)})
	url := serve(t, a)
	scan(t, a)
	scan(t, a)
	code, body := get(t, fmt.Sprintf("%s/api/v1/history?pid=%d&since=10m", url, h.PID))
	var hist agent.HistoryJSON
	if code != 200 || json.Unmarshal([]byte(body), &hist) != nil {
		t.Fatalf("history: %d %s", code, body)
	}
	if len(hist.Points) != 2 || hist.Points[1].CloseWait != 2 || hist.Points[1].FDLimit != 128 || hist.PID != h.PID {
		t.Errorf("history from the store: %+v", hist)
	}
	code, body = get(t, url+"/api/v1/history")
	if code != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist.Points) != 2 {
		t.Errorf("host totals from the store: %d %.300s", code, body)
	}
}
