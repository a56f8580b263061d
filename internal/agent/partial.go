package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// partialCollector exports whether the latest snapshot could name every
// socket's owner. An agent without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
// cannot read other users' fd tables: it says so on every scan, here, in the
// snapshot's notices and on /healthz, not only on the first (full) one.
type partialCollector struct {
	a               *Agent
	partial, denied *prometheus.Desc
}

func newPartialCollector(a *Agent) *partialCollector {
	return &partialCollector{
		a: a,
		partial: prometheus.NewDesc("closewait_scan_partial",
			"1 when the latest scan could not read some processes' fd tables (missing CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH), so sockets they hold have no owner; else 0.", nil, nil),
		denied: prometheus.NewDesc("closewait_scan_processes_denied",
			"Processes whose fd tables the latest owner search could not read for lack of privilege.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *partialCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.partial
	ch <- c.denied
}

// Collect implements prometheus.Collector.
func (c *partialCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.state.Load()
	if st == nil || st.Report == nil {
		return
	}
	snap := st.Report.Snapshot
	partial := 0.0
	if snap.Partial {
		partial = 1
	}
	ch <- prometheus.MustNewConstMetric(c.partial, prometheus.GaugeValue, partial)
	ch <- prometheus.MustNewConstMetric(c.denied, prometheus.GaugeValue, float64(snap.Stats.Scan.Denied))
}

// notices returns the latest snapshot's notices (what it could not see).
func (a *Agent) notices() []string {
	if st := a.state.Load(); st != nil && st.Report != nil {
		return st.Report.Snapshot.Notices
	}
	return nil
}
