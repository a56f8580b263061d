package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/signal"
	"syscall"
	"time"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/origins"
)

// DefaultAgentListen is the agent's default address. Port 10717: the
// Prometheus exporter range 9100-9999 is fully allocated, so the port sits
// above it, clear of the Kubernetes node ports 10248-10260.
const DefaultAgentListen = "127.0.0.1:10717"

// AgentCmd is `closewait agent`.
type AgentCmd struct {
	HostFlags
	ThresholdFlags
	ScanFlags
	SecretsFlag
	FeedFlag
	Listen    string        `default:"127.0.0.1:10717" placeholder:"ADDR" help:"Address to serve on, host:port (default 127.0.0.1:10717: above the fully allocated Prometheus exporter range 9100-9999; port 0 picks a free one and the first line printed names it). Binds localhost unless told otherwise; 0.0.0.0 binds IPv4 only, [::] IPv6 and IPv4."`
	WebConfig string        `name:"web.config.file" placeholder:"FILE" help:"Prometheus exporter-toolkit web configuration (as node_exporter's): TLS and basic auth on every path. See deploy/README.md."`
	Interval  time.Duration `default:"15s" help:"Time between scans (at least 1s)."`
	Top       int           `default:"20" help:"Processes with the most CLOSE_WAIT sockets that get their own metric series; the rest are summed under comm=\"other\" (1..1000)."`
	Retention time.Duration `default:"1h" help:"How long the history (dashboard charts, /api/v1/history) keeps points."`
	History   string        `placeholder:"PATH" help:"Keep the history in this file (bbolt; see closewait watch) instead of memory only. Without it the agent writes nothing."`
	NetNS     []string      `name:"netns" sep:"," placeholder:"NS" help:"Read only these network namespaces: an inode (as in net:[INODE]) or a name under /run/netns (one agent per namespace). Default: every namespace the agent can enter."`
	Trace     bool          `help:"Record the creation stack of every socket made by the processes holding CLOSE_WAIT sockets (eBPF, as closewait trace; from when each is first seen) and serve the origins of the CLOSE_WAIT sockets at /api/v1/origins."`
}

// Run serves until SIGTERM or SIGINT, then shuts the server down cleanly.
func (c *AgentCmd) Run(g *Globals) error {
	longRunningGC()
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	switch {
	case c.Interval < time.Second:
		return fmt.Errorf("--interval must be at least 1s, got %v", c.Interval)
	case c.Top < 1 || c.Top > 1000:
		return fmt.Errorf("--top must be between 1 and 1000, got %d", c.Top)
	case c.Retention < c.Interval || c.Retention > 31*24*time.Hour:
		return fmt.Errorf("--retention must be between --interval and 744h, got %v", c.Retention)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:10717 (%v)", c.Listen, err)
	}

	opt := agent.Options{
		ProcRoot: g.ProcRoot, ShowSecrets: c.ShowSecrets, Interval: c.Interval, Thresholds: th, TopN: c.Top,
		Retention: c.Retention, CompleteScan: c.FullScan, ForceProcNet: c.ProcNet,
		Version: Version, OwnerSource: g.OwnerSource(true), Changes: g.changeFeed(c.Feed, c.Interval),
		ReleaseMemory: true,
	}
	defer g.closeOwners()
	if len(c.NetNS) > 0 {
		opt.NetNS = map[uint64]bool{}
		for _, n := range c.NetNS {
			ino, err := netns.Resolve(n)
			if err != nil {
				return fmt.Errorf("--netns: %w", err)
			}
			opt.NetNS[ino] = true
		}
	}
	if c.Trace {
		rec, err := openRecorder("agent --trace")
		if err != nil {
			return err
		}
		defer rec.Close()
		opt.Origins = origins.NewTable(rec, g.ProcRoot, origins.PerProcess)
		defer opt.Origins.Close()
	}
	if c.History != "" {
		st, err := history.Open(c.History, history.Options{MaxAge: c.Retention})
		switch {
		case errors.Is(err, history.ErrDamaged):
			// Keep serving: the metrics matter more than the charts' past.
			opt.HistoryProblem = err.Error()
			fmt.Fprintf(g.stderr, "closewait: --history: %v; serving with the history in memory only\n", oneLine(historyError(err)))
		case err != nil:
			return fmt.Errorf("--history: %w", err)
		default:
			defer st.Close()
			opt.History = agent.FromStore(st)
		}
	}
	return c.serve(g, opt)
}

// agentShutdownTimeout bounds how long in-flight requests may take after SIGTERM.
const agentShutdownTimeout = 5 * time.Second

func (c *AgentCmd) serve(g *Globals, opt agent.Options) error {
	opt.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(opt)
	if err != nil {
		return err
	}
	scheme, auth := "http", false
	if c.WebConfig != "" {
		tls, err := agent.CheckWebConfig(c.WebConfig)
		if err != nil {
			return fmt.Errorf("--web.config.file: %w", err)
		}
		if tls {
			scheme = "https"
		}
		auth = true
	}
	ln, err := listen(c.Listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() && !auth {
		fmt.Fprintf(g.stderr, "closewait: note: serving on %s, reachable from other hosts, without TLS or auth (--web.config.file); the agent is read-only and redacts secret-looking arguments, but shows process command lines\n", addr)
	}
	fmt.Fprintf(g.stdout, "closewait agent: listening on %s://%s/ (metrics /metrics, API /api/v1/snapshot, dashboard /)\n", scheme, addr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := agent.NewServer(a.Handler())
	served := make(chan error, 1)
	webLog := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})) // exporter-toolkit's start-up lines are said above
	go func() { served <- agent.Serve(ln, srv, c.WebConfig, webLog) }()
	scanned := make(chan error, 1)
	go func() { scanned <- a.Run(ctx) }()

	select {
	case err = <-served: // the listener failed
		stop()
		<-scanned
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), agentShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-scanned
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintln(g.stdout, "closewait agent: stopped")
	return nil
}

// listen binds what addr asks: an IPv4 address (0.0.0.0 included) binds IPv4
// only and an IPv6 address IPv6 only, while [::] and an empty host mean both
// (Go's "tcp" on 0.0.0.0 would also take IPv6). A name binds the first
// address it resolves to.
func listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:10717 (%v)", addr, err)
	}
	network := "tcp"
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Is4():
			network = "tcp4"
		case ip.Is6() && !ip.IsUnspecified():
			network = "tcp6"
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
