package agent

import (
	"cmp"
	"slices"
	"strconv"

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
type Collector struct {
	a *Agent

	sockets, unattributed, processes, status    metricDesc
	procCW, procOldest, procFDRatio, procStatus metricDesc
	procOpenFDs, procFDLimit, procFindings      metricDesc
	duration, errors, scans, success, lastScan  metricDesc
	topN, historyOK                             metricDesc
}

// Metric names the agent exports (without the client library's go_ and
// process_ families). The Grafana dashboard and the alert rules may use only
// these; a test checks it.
var MetricNames = []string{
	"closewait_sockets",
	"closewait_unattributed_close_wait_sockets",
	"closewait_processes_with_close_wait",
	"closewait_status",
	"closewait_process_close_wait_sockets",
	"closewait_process_close_wait_oldest_age_seconds",
	"closewait_process_fd_usage_ratio",
	"closewait_process_open_fds",
	"closewait_process_fd_limit",
	"closewait_process_status",
	"closewait_process_findings",
	"closewait_scrape_duration_seconds",
	"closewait_scrape_errors_total",
	"closewait_scrapes_total",
	"closewait_scrape_success",
	"closewait_last_scrape_timestamp_seconds",
	"closewait_top_processes",
	"closewait_history_file_ok",
}

// NewCollector makes the collector of an agent.
func NewCollector(a *Agent) *Collector {
	pl := []string{"pid", "comm"}
	d := func(name, help string, typ prometheus.ValueType, labels ...string) metricDesc {
		return metricDesc{prometheus.NewDesc(name, help, labels, nil), typ}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &Collector{
		a:            a,
		sockets:      d("closewait_sockets", "TCP sockets on the host (the agent's network namespace) by state.", g, "state"),
		unattributed: d("closewait_unattributed_close_wait_sockets", "CLOSE_WAIT sockets no visible process holds (owner exited, or fd tables not readable).", g),
		processes:    d("closewait_processes_with_close_wait", "Processes holding at least one CLOSE_WAIT socket (all of them, not only the top N).", g),
		status:       d("closewait_status", "Host status by the agent's thresholds: 0 ok, 1 warning, 2 critical.", g),
		procCW:       d("closewait_process_close_wait_sockets", "CLOSE_WAIT sockets held by the process (top N by count; the rest summed under comm=\"other\").", g, pl...),
		procOldest:   d("closewait_process_close_wait_oldest_age_seconds", "Age of the process's oldest CLOSE_WAIT socket, estimated from tcp_info last_ack_recv (\"other\": the oldest among the rest).", g, pl...),
		procFDRatio:  d("closewait_process_fd_usage_ratio", "Open fds of the process as a share of its soft RLIMIT_NOFILE, 0..1; absent when the limit is unknown or unlimited (\"other\": the highest among the rest).", g, pl...),
		procOpenFDs:  d("closewait_process_open_fds", "Open fds of the process (top N only).", g, pl...),
		procFDLimit:  d("closewait_process_fd_limit", "Soft RLIMIT_NOFILE of the process (top N only; absent when unlimited or unknown).", g, pl...),
		procStatus:   d("closewait_process_status", "Process status by the agent's thresholds: 0 ok, 1 warning, 2 critical (top N only).", g, pl...),
		procFindings: d("closewait_process_findings", "CLOSE_WAIT sockets of the process explained by each finding cause (missing-close, abandoned-unread, pool-idle, not-accepted, normal-half-close); top N only.", g, "pid", "comm", "cause"),
		duration:     d("closewait_scrape_duration_seconds", "Time the latest scan (socket dump, owner search, diagnosis) took.", g),
		errors:       d("closewait_scrape_errors_total", "Scans that failed since the agent started.", c),
		scans:        d("closewait_scrapes_total", "Scans attempted since the agent started.", c),
		success:      d("closewait_scrape_success", "1 if the latest scan succeeded, else 0.", g),
		lastScan:     d("closewait_last_scrape_timestamp_seconds", "Unix time the latest scan ended.", g),
		topN:         d("closewait_top_processes", "The agent's --top: how many processes get their own series.", g),
		historyOK:    d("closewait_history_file_ok", "1 when the history file (--history) is in use, 0 when it was refused as damaged and the history is kept in memory only; absent without --history.", g),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []metricDesc{c.sockets, c.unattributed, c.processes, c.status, c.procCW, c.procOldest,
		c.procFDRatio, c.procOpenFDs, c.procFDLimit, c.procStatus, c.procFindings, c.duration, c.errors,
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
		ch <- c.sockets.must(float64(r.Snapshot.States[s]), s.String())
	}
	ch <- c.unattributed.must(float64(r.Unattributed.Count))
	ch <- c.processes.must(float64(len(r.Processes)))
	ch <- c.status.must(float64(r.Status))

	top, rest := TopProcesses(r.Processes, a.opt.TopN)
	for _, p := range top {
		pid, comm := strconv.Itoa(p.PID), Comm(p)
		ch <- c.procCW.must(float64(p.CloseWait), pid, comm)
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
		for _, f := range p.Findings {
			causes[f.Cause] += f.Count
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
