package agent

import (
	"cmp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// OtherComm is the comm label of the series summing every process beyond the
// top N (its pid label is empty).
const OtherComm = "other"

type metricDesc struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func (d metricDesc) must(v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d.desc, d.typ, v, labels...)
}

// Collector is a prometheus.Collector that builds constant metrics from the
// agent's latest published report at scrape time (node_exporter's pattern):
// no mutable gauges, and a scrape never waits for a scan.
//
// Names follow the Prometheus conventions: _total for counters, base units
// (_seconds), "scan" for the agent's own work ("scrape" is what Prometheus
// does to it), and TCP state label values as node_exporter's tcpstat
// collector writes them (close_wait, time_wait, ...), so the two join.
type Collector struct {
	a *Agent

	buildInfo                                        metricDesc
	sockets, unattributed, processes, status         metricDesc
	entered, left, procEntered                       metricDesc
	procCW, procOldest, procFDRatio, procStatus      metricDesc
	procOpenFDs, procFDLimit, procFindings           metricDesc
	poolIdleSockets, poolIdleTimeout                 metricDesc
	duration, errors, scans, success, lastScan, topN metricDesc
	historyOK                                        metricDesc
}

// MetricNames are the metric families the agent exports (without the client
// library's go_ and process_ families). The Grafana dashboard and the alert
// rules may use only these; a test checks it.
var MetricNames = []string{
	"closewait_build_info",
	"closewait_sockets",
	"closewait_unattributed_close_wait_sockets",
	"closewait_processes_with_close_wait",
	"closewait_status",
	"closewait_close_wait_entered_total",
	"closewait_close_wait_left_total",
	"closewait_process_close_wait_entered_total",
	"closewait_process_close_wait_sockets",
	"closewait_process_close_wait_oldest_age_seconds",
	"closewait_process_fd_usage_ratio",
	"closewait_process_open_fds",
	"closewait_process_fd_limit",
	"closewait_process_status",
	"closewait_process_finding_sockets",
	"closewait_pool_idle_sockets",
	"closewait_pool_idle_server_timeout_seconds",
	"closewait_scan_duration_seconds",
	"closewait_scan_errors_total",
	"closewait_scans_total",
	"closewait_scan_success",
	"closewait_last_scan_timestamp_seconds",
	"closewait_top_processes",
	"closewait_history_file_ok",
}

// RenamedMetrics maps the names of earlier releases to the current ones
// (documented in deploy/README.md for whoever has dashboards on the old).
var RenamedMetrics = map[string]string{
	"closewait_process_findings":              "closewait_process_finding_sockets",
	"closewait_scrape_duration_seconds":       "closewait_scan_duration_seconds",
	"closewait_scrape_errors_total":           "closewait_scan_errors_total",
	"closewait_scrapes_total":                 "closewait_scans_total",
	"closewait_scrape_success":                "closewait_scan_success",
	"closewait_last_scrape_timestamp_seconds": "closewait_last_scan_timestamp_seconds",
}

// StateLabel is a TCP state as node_exporter's tcpstat collector writes it
// in node_tcp_connection_states{state}: "close_wait", "time_wait", ...
func StateLabel(s sockdiag.State) string { return strings.ToLower(s.String()) }

// NewCollector makes the collector of an agent.
func NewCollector(a *Agent) *Collector {
	pl := []string{"pid", "comm"}
	d := func(name, help string, typ prometheus.ValueType, labels ...string) metricDesc {
		return metricDesc{prometheus.NewDesc(name, help, labels, nil), typ}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &Collector{
		a:               a,
		buildInfo:       d("closewait_build_info", "Always 1; the labels say which closewait build runs and with which Go.", g, "version", "goversion"),
		sockets:         d("closewait_sockets", "TCP sockets on the host (the namespaces the agent reads) by state, labelled as node_exporter's node_tcp_connection_states.", g, "state"),
		unattributed:    d("closewait_unattributed_close_wait_sockets", "CLOSE_WAIT sockets no visible process holds (owner exited, or fd tables not readable).", g),
		processes:       d("closewait_processes_with_close_wait", "Processes holding at least one CLOSE_WAIT socket (all of them, not only the top N).", g),
		status:          d("closewait_status", "Host status by the agent's thresholds: 0 ok, 1 warning, 2 critical.", g),
		entered:         d("closewait_close_wait_entered_total", "CLOSE_WAIT sockets that appeared between two scans, since the agent started; rate() minus the rate of _left_total is the growth.", c),
		left:            d("closewait_close_wait_left_total", "CLOSE_WAIT sockets that disappeared (closed by their process, reset, or their process exited) between two scans, since the agent started.", c),
		procEntered:     d("closewait_process_close_wait_entered_total", "CLOSE_WAIT sockets that appeared in the process between two scans, since the agent first saw it hold one (top N only).", c, pl...),
		procCW:          d("closewait_process_close_wait_sockets", "CLOSE_WAIT sockets held by the process (top N by count; the rest summed under comm=\"other\").", g, pl...),
		procOldest:      d("closewait_process_close_wait_oldest_age_seconds", "Age of the process's oldest CLOSE_WAIT socket, estimated from tcp_info last_ack_recv (\"other\": the oldest among the rest).", g, pl...),
		procFDRatio:     d("closewait_process_fd_usage_ratio", "Open fds of the process as a share of its soft RLIMIT_NOFILE, 0..1; absent when the limit is unknown or unlimited (\"other\": the highest among the rest).", g, pl...),
		procOpenFDs:     d("closewait_process_open_fds", "Open fds of the process (top N only).", g, pl...),
		procFDLimit:     d("closewait_process_fd_limit", "Soft RLIMIT_NOFILE of the process (top N only; absent when unlimited or unknown).", g, pl...),
		procStatus:      d("closewait_process_status", "Process status by the agent's thresholds: 0 ok, 1 warning, 2 critical (top N only).", g, pl...),
		procFindings:    d("closewait_process_finding_sockets", "CLOSE_WAIT sockets of the process explained by each finding cause ("+diagnose.CauseIDs()+"); top N only.", g, "pid", "comm", "cause"),
		poolIdleSockets: d("closewait_pool_idle_sockets", "CLOSE_WAIT sockets of a pool-idle finding: idle pooled connections of the process to one upstream (remote) that the server closed (top N processes only).", g, "pid", "comm", "remote"),
		poolIdleTimeout: d("closewait_pool_idle_server_timeout_seconds", "The upstream's idle timeout estimated from a pool-idle finding (tcp_info: last data received minus the FIN's arrival, median); evict idle pooled connections sooner than this (top N processes only).", g, "pid", "comm", "remote"),
		duration:        d("closewait_scan_duration_seconds", "Time the latest scan (socket dump, owner search, diagnosis) took.", g),
		errors:          d("closewait_scan_errors_total", "Scans that failed since the agent started.", c),
		scans:           d("closewait_scans_total", "Scans attempted since the agent started.", c),
		success:         d("closewait_scan_success", "1 if the latest scan succeeded, else 0.", g),
		lastScan:        d("closewait_last_scan_timestamp_seconds", "Unix time the latest scan ended.", g),
		topN:            d("closewait_top_processes", "The agent's --top: how many processes get their own series.", g),
		historyOK:       d("closewait_history_file_ok", "1 when the history file (--history) is in use, 0 when it was refused as damaged and the history is kept in memory only; absent without --history.", g),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []metricDesc{c.buildInfo, c.sockets, c.unattributed, c.processes, c.status,
		c.entered, c.left, c.procEntered, c.procCW, c.procOldest,
		c.procFDRatio, c.procOpenFDs, c.procFDLimit, c.procStatus, c.procFindings,
		c.poolIdleSockets, c.poolIdleTimeout, c.duration, c.errors,
		c.scans, c.success, c.lastScan, c.topN, c.historyOK} {
		ch <- d.desc
	}
}

// TopProcesses returns the n processes with the most CLOSE_WAIT sockets (ties
// by pid) and the rest.
func TopProcesses(procs []*diagnose.ProcessReport, n int) (top, rest []*diagnose.ProcessReport) {
	s := slices.Clone(procs)
	slices.SortStableFunc(s, func(a, b *diagnose.ProcessReport) int {
		return cmp.Or(cmp.Compare(b.CloseWait, a.CloseWait), cmp.Compare(a.PID, b.PID))
	})
	if len(s) <= n {
		return s, nil
	}
	return s[:n], s[n:]
}

// Comm is the process's command name, or "?" when it exited before its facts were read.
func Comm(p *diagnose.ProcessReport) string {
	if p.Process == nil || p.Process.Comm == "" {
		return "?"
	}
	return p.Process.Comm
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	ch <- c.buildInfo.must(1, a.opt.Version, runtime.Version())
	ch <- c.errors.must(float64(a.errors.Load()))
	ch <- c.scans.must(float64(a.scans.Load()))
	ch <- c.topN.must(float64(a.opt.TopN))
	switch {
	case a.opt.HistoryProblem != "":
		ch <- c.historyOK.must(0)
	case a.opt.History != nil:
		ch <- c.historyOK.must(1)
	}
	st := a.state.Load()
	if st == nil {
		ch <- c.success.must(0)
		return
	}
	ch <- c.duration.must(st.Duration.Seconds())
	ch <- c.lastScan.must(float64(st.Time.UnixNano()) / 1e9)
	if st.Err != nil {
		ch <- c.success.must(0)
	} else {
		ch <- c.success.must(1)
	}
	r := st.Report
	if r == nil {
		return
	}
	for _, s := range sockdiag.States() {
		ch <- c.sockets.must(float64(r.Snapshot.States[s]), StateLabel(s))
	}
	in, out := a.counts.totals()
	ch <- c.entered.must(float64(in))
	ch <- c.left.must(float64(out))
	ch <- c.unattributed.must(float64(r.Unattributed.Count))
	ch <- c.processes.must(float64(len(r.Processes)))
	ch <- c.status.must(float64(r.Status))

	top, rest := TopProcesses(r.Processes, a.opt.TopN)
	for _, p := range top {
		pid, comm := strconv.Itoa(p.PID), Comm(p)
		ch <- c.procCW.must(float64(p.CloseWait), pid, comm)
		if n, ok := a.counts.process(p.PID, comm); ok {
			ch <- c.procEntered.must(float64(n), pid, comm)
		}
		if p.HasAge {
			ch <- c.procOldest.must(p.Oldest.Seconds(), pid, comm)
		}
		if share := p.FDShare(); share > 0 {
			ch <- c.procFDRatio.must(share, pid, comm)
			ch <- c.procFDLimit.must(float64(p.Process.FDSoft), pid, comm)
		}
		if p.Process != nil {
			ch <- c.procOpenFDs.must(float64(p.Process.OpenFDs), pid, comm)
		}
		ch <- c.procStatus.must(float64(p.Status), pid, comm)
		causes := map[string]int{}
		type upstream struct {
			sockets int
			timeout float64
		}
		var pools map[string]*upstream
		for _, f := range p.Findings {
			causes[f.Cause] += f.Count
			if f.Cause == diagnose.CausePoolIdle && f.Remote != "" {
				if pools == nil {
					pools = map[string]*upstream{}
				}
				u := pools[f.Remote]
				if u == nil {
					u = &upstream{}
					pools[f.Remote] = u
				}
				u.sockets += f.Count
				u.timeout = max(u.timeout, f.RemoteIdleTimeout)
			}
		}
		for remote, u := range pools {
			ch <- c.poolIdleSockets.must(float64(u.sockets), pid, comm, remote)
			if u.timeout > 0 {
				ch <- c.poolIdleTimeout.must(u.timeout, pid, comm, remote)
			}
		}
		for cause, n := range causes {
			ch <- c.procFindings.must(float64(n), pid, comm, cause)
		}
	}
	if len(rest) > 0 {
		var cw int
		var oldest, share float64
		hasAge := false
		for _, p := range rest {
			cw += p.CloseWait
			if p.HasAge {
				hasAge = true
				oldest = max(oldest, p.Oldest.Seconds())
			}
			share = max(share, p.FDShare())
		}
		ch <- c.procCW.must(float64(cw), "", OtherComm)
		if hasAge {
			ch <- c.procOldest.must(oldest, "", OtherComm)
		}
		if share > 0 {
			ch <- c.procFDRatio.must(share, "", OtherComm)
		}
	}
}
