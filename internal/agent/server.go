package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"

	"github.com/closewait/closewait/internal/report"
)

// HTTP limits of the server NewServer makes.
const (
	MaxHeaderBytes    = 16 << 10
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	// IdleTimeout closes a keep-alive connection left idle this long (a
	// Prometheus scraping every 15 s keeps its connection).
	IdleTimeout = 30 * time.Second
	// MaxHistory is the longest ?since= the history API accepts.
	MaxHistory = 31 * 24 * time.Hour
	// maxPID is the kernel's PID_MAX_LIMIT (4M on 64-bit).
	maxPID = 1 << 22
)

// NewServer returns an http.Server for h with the timeouts and header limit
// above set: slow or oversized requests are cut off (a header block above
// MaxHeaderBytes gets 431). Serve it with Serve, which also bounds its
// connections.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		// "OPTIONS *" goes to the handler (and gets a 4xx) instead of net/http's 200.
		DisableGeneralOptionsHandler: true,
	}
}

// Handler returns the agent's HTTP handler: GET and HEAD only (other methods
// get 405), unknown paths 404, bad query values 400.
//
//	/                       the dashboard
//	/metrics                Prometheus metrics (503 when 4 scrapes are already in flight)
//	/healthz                200 "ok" when the latest scan succeeded and is recent, else 503;
//	                        then one "note: …" line per notice of the latest snapshot
//	/api/v1/snapshot        the JSON contract of the latest report (as closewait --json)
//	/api/v1/processes/{pid} one process of it
//	/api/v1/history         ?pid=N&since=DURATION: a process's series; without pid, the host totals
//	/static/{file}          embedded assets
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(a), newPartialCollector(a),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", onlyParams(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /api/v1/snapshot", a.apiSnapshot)
	mux.HandleFunc("GET /api/v1/processes/{pid}", a.apiProcess)
	mux.HandleFunc("GET /api/v1/history", a.apiHistory)
	mux.HandleFunc("GET /api/v1/origins", a.apiOrigins)
	mux.HandleFunc("GET /static/{name}", serveStatic)
	mux.HandleFunc("GET /{$}", a.dashboard)
	return secureHeaders(mux)
}

// Serve serves srv on ln until srv is shut down. It bounds the connections
// (MaxConns) and, when webConfig names a file, applies Prometheus
// exporter-toolkit's web configuration to every path, as node_exporter's
// --web.config.file does: TLS (tls_server_config), basic auth
// (basic_auth_users, bcrypt hashes), extra headers, rate limits. The file is
// read again on each request and each TLS handshake, so changes apply without
// a restart.
func Serve(ln net.Listener, srv *http.Server, webConfig string, logger *slog.Logger) error {
	ln = LimitConns(ln, srv, MaxConns)
	systemd := false
	return web.Serve(ln, srv, &web.FlagConfig{
		WebListenAddresses: &[]string{ln.Addr().String()},
		WebSystemdSocket:   &systemd,
		WebConfigFile:      &webConfig,
	}, logger)
}

// CheckWebConfig reads a web configuration file (see Serve) and reports
// whether it turns TLS on. Its errors name the problem in one line.
func CheckWebConfig(path string) (tls bool, err error) {
	if err := web.Validate(path); err != nil {
		return false, fmt.Errorf("web config %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("web config: %w", err)
	}
	var c web.Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return false, fmt.Errorf("web config %s: %w", path, err)
	}
	return c.TLSConfig.TLSCertPath != "" || c.TLSConfig.TLSCert != "", nil
}

// secureHeaders sets headers that keep browsers from sniffing or framing the
// pages and allow only the agent's own scripts and styles.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.ServeHTTP(w, r)
	})
}

// onlyParams rejects a query with parameters other than the given ones, or
// with any parameter repeated.
func onlyParams(h http.Handler, names ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := checkQuery(r, names...); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
}

func checkQuery(r *http.Request, names ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("bad query string: %v", err)
	}
	for k, v := range q {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			if len(names) == 0 {
				return nil, fmt.Errorf("unknown query parameter %q (this path takes none)", trunc(k))
			}
			return nil, fmt.Errorf("unknown query parameter %q (known: %s)", trunc(k), strings.Join(names, ", "))
		}
		if len(v) > 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
	}
	return q, nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

func (a *Agent) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := checkQuery(r); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	ok, why := a.Healthy(time.Now())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
	for _, n := range a.notices() { // what the agent cannot see (no owners without privilege): on every scan
		fmt.Fprintln(w, "note: "+n)
	}
}

// report returns the latest report, or answers 503.
func (a *Agent) latestReport(w http.ResponseWriter) *State {
	st := a.state.Load()
	if st == nil || st.Report == nil {
		httpError(w, http.StatusServiceUnavailable, "no snapshot yet: the first scan has not finished")
		return nil
	}
	return st
}

// apiOrigins serves the origins table of agent --trace (origins.Report).
func (a *Agent) apiOrigins(w http.ResponseWriter, r *http.Request) {
	if _, err := checkQuery(r); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.opt.Origins == nil {
		httpError(w, http.StatusNotFound, "origins are recorded only by closewait agent --trace")
		return
	}
	rep, err := a.opt.Origins.Report()
	switch {
	case rep == nil && err != nil:
		httpError(w, http.StatusServiceUnavailable, "origins: "+err.Error())
	case rep == nil:
		httpError(w, http.StatusServiceUnavailable, "no origins yet: the first scan has not finished")
	default:
		writeJSON(w, rep)
	}
}

func (a *Agent) apiSnapshot(w http.ResponseWriter, r *http.Request) {
	if _, err := checkQuery(r); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if st := a.latestReport(w); st != nil {
		writeJSON(w, report.BuildJSON(st.Report))
	}
}

// parsePID reads a process id from a request value.
func parsePID(s string) (int, error) {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || pid > maxPID {
		return 0, fmt.Errorf("pid must be a process id (1..%d), got %q", maxPID, trunc(s))
	}
	return pid, nil
}

func (a *Agent) apiProcess(w http.ResponseWriter, r *http.Request) {
	if _, err := checkQuery(r); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	pid, err := parsePID(r.PathValue("pid"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	st := a.latestReport(w)
	if st == nil {
		return
	}
	for _, p := range st.Report.Processes {
		if p.PID == pid {
			writeJSON(w, report.BuildJSONProcess(p))
			return
		}
	}
	httpError(w, http.StatusNotFound, fmt.Sprintf("process %d holds no CLOSE_WAIT socket in the latest snapshot", pid))
}

// HistoryJSON is the /api/v1/history answer. Times are RFC 3339 in UTC, as
// everywhere in the JSON contract; a point's "time" (Unix seconds) stays for
// the clients written before "timestamp" was added.
type HistoryJSON struct {
	PID    int         `json:"pid,omitempty"` // absent for the host totals
	Since  string      `json:"since"`         // RFC 3339
	Points []PointJSON `json:"points"`
}

// PointJSON is one point of a series.
type PointJSON struct {
	Timestamp string `json:"timestamp"` // RFC 3339, UTC
	Time      int64  `json:"time"`      // the same, in Unix seconds (kept for older clients)
	CloseWait int    `json:"close_wait"`
	OpenFDs   int    `json:"open_fds"`
	FDLimit   uint64 `json:"fd_limit,omitempty"`
	// OldestAge is the age of the oldest CLOSE_WAIT socket (for the host: of
	// every process and of the unattributed ones); null when unknown (no
	// tcp_info, no CLOSE_WAIT, or a history store that does not keep it).
	OldestAge *float64 `json:"oldest_age_seconds"`
}

func (a *Agent) apiHistory(w http.ResponseWriter, r *http.Request) {
	q, err := checkQuery(r, "pid", "since")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	span := a.opt.Retention
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > MaxHistory {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("since must be a duration like 15m or 2h, at most %s, got %q", MaxHistory, trunc(s)))
			return
		}
		span = d
	}
	from := time.Now().Add(-span)
	out := HistoryJSON{Since: from.UTC().Format(time.RFC3339), Points: []PointJSON{}}
	var pts []Point
	if s, ok := q["pid"]; ok {
		pid, err := parsePID(s[0])
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		out.PID = pid
		pts, err = a.hist.Series(pid, from)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "history: "+err.Error())
			return
		}
		if len(pts) == 0 {
			httpError(w, http.StatusNotFound, fmt.Sprintf("no history for process %d since %s", pid, out.Since))
			return
		}
	} else {
		pts, err = a.hist.Totals(from)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "history: "+err.Error())
			return
		}
	}
	for _, p := range pts {
		pj := PointJSON{Timestamp: p.Time.UTC().Format(time.RFC3339), Time: p.Time.Unix(), CloseWait: p.CloseWait, OpenFDs: p.OpenFDs, FDLimit: p.FDLimit}
		if p.OldestAge > 0 {
			age := p.OldestAge
			pj.OldestAge = &age
		}
		out.Points = append(out.Points, pj)
	}
	writeJSON(w, out)
}
