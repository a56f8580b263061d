package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

func proc(pid, cw int, comm string, fds int, limit uint64, age time.Duration, st diagnose.Status, causes ...string) *diagnose.ProcessReport {
	p := &diagnose.ProcessReport{
		PID: pid, CloseWait: cw, Status: st, Oldest: age, HasAge: age > 0,
		Process: &procscan.Process{PID: pid, Comm: comm, OpenFDs: fds, FDSoft: limit},
	}
	for _, c := range causes {
		p.Findings = append(p.Findings, diagnose.Finding{Cause: c, Count: cw / len(causes)})
	}
	return p
}

// TestCollectorTopN checks the exposition of a constructed report: the top N
// processes by CLOSE_WAIT get their own series, the rest one "other" series
// (sum of counts, oldest age, highest fd share), findings by cause.
func TestCollectorTopN(t *testing.T) {
	a, err := New(Options{TopN: 2, Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	snap := &snapshot.Snapshot{Time: time.Unix(1_700_000_000, 0), States: map[sockdiag.State]int{sockdiag.CloseWait: 170, sockdiag.Established: 9}}
	r := &diagnose.Report{Snapshot: snap, Status: diagnose.Critical, CloseWait: 170,
		Unattributed: diagnose.UnattributedReport{Count: 4},
		Processes: []*diagnose.ProcessReport{
			proc(20, 5, "small", 40, 1024, time.Minute, diagnose.Critical), // worst status, few sockets
			proc(10, 120, "java", 900, 1024, 10*time.Minute, diagnose.Critical, "pool-idle", "missing-close"),
			proc(30, 30, "node", 50, 0, 0, diagnose.OK),
			proc(40, 11, "py", 600, 1000, 2*time.Hour, diagnose.OK),
		}}
	a.state.Store(&State{Report: r, Time: time.Unix(1_700_000_001, 0), Duration: 250 * time.Millisecond})
	a.errors.Store(2)

	want := `
# HELP closewait_process_close_wait_sockets CLOSE_WAIT sockets held by the process (top N by count; the rest summed under comm="other").
# TYPE closewait_process_close_wait_sockets gauge
closewait_process_close_wait_sockets{comm="java",pid="10"} 120
closewait_process_close_wait_sockets{comm="node",pid="30"} 30
closewait_process_close_wait_sockets{comm="other",pid=""} 16
# HELP closewait_process_close_wait_oldest_age_seconds Age of the process's oldest CLOSE_WAIT socket, estimated from tcp_info last_ack_recv ("other": the oldest among the rest).
# TYPE closewait_process_close_wait_oldest_age_seconds gauge
closewait_process_close_wait_oldest_age_seconds{comm="java",pid="10"} 600
closewait_process_close_wait_oldest_age_seconds{comm="other",pid=""} 7200
# HELP closewait_process_fd_usage_ratio Open fds of the process as a share of its soft RLIMIT_NOFILE, 0..1; absent when the limit is unknown or unlimited ("other": the highest among the rest).
# TYPE closewait_process_fd_usage_ratio gauge
closewait_process_fd_usage_ratio{comm="java",pid="10"} 0.87890625
closewait_process_fd_usage_ratio{comm="other",pid=""} 0.6
# HELP closewait_process_findings CLOSE_WAIT sockets of the process explained by each finding cause (missing-close, abandoned-unread, pool-idle, not-accepted, normal-half-close); top N only.
# TYPE closewait_process_findings gauge
closewait_process_findings{cause="missing-close",comm="java",pid="10"} 60
closewait_process_findings{cause="pool-idle",comm="java",pid="10"} 60
# HELP closewait_process_status Process status by the agent's thresholds: 0 ok, 1 warning, 2 critical (top N only).
# TYPE closewait_process_status gauge
closewait_process_status{comm="java",pid="10"} 2
closewait_process_status{comm="node",pid="30"} 0
# HELP closewait_scrape_errors_total Scans that failed since the agent started.
# TYPE closewait_scrape_errors_total counter
closewait_scrape_errors_total 2
# HELP closewait_scrape_duration_seconds Time the latest scan (socket dump, owner search, diagnosis) took.
# TYPE closewait_scrape_duration_seconds gauge
closewait_scrape_duration_seconds 0.25
# HELP closewait_scrape_success 1 if the latest scan succeeded, else 0.
# TYPE closewait_scrape_success gauge
closewait_scrape_success 1
# HELP closewait_status Host status by the agent's thresholds: 0 ok, 1 warning, 2 critical.
# TYPE closewait_status gauge
closewait_status 2
# HELP closewait_unattributed_close_wait_sockets CLOSE_WAIT sockets no visible process holds (owner exited, or fd tables not readable).
# TYPE closewait_unattributed_close_wait_sockets gauge
closewait_unattributed_close_wait_sockets 4
# HELP closewait_processes_with_close_wait Processes holding at least one CLOSE_WAIT socket (all of them, not only the top N).
# TYPE closewait_processes_with_close_wait gauge
closewait_processes_with_close_wait 4
`
	names := []string{"closewait_process_close_wait_sockets", "closewait_process_close_wait_oldest_age_seconds",
		"closewait_process_fd_usage_ratio", "closewait_process_findings", "closewait_process_status",
		"closewait_scrape_errors_total", "closewait_scrape_duration_seconds", "closewait_scrape_success",
		"closewait_status", "closewait_unattributed_close_wait_sockets", "closewait_processes_with_close_wait"}
	if err := testutil.CollectAndCompare(NewCollector(a), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewCollector(a), "closewait_sockets"); n != len(sockdiag.States()) {
		t.Errorf("closewait_sockets has %d series, want one per state (%d)", n, len(sockdiag.States()))
	}
	// Every exported family is listed in MetricNames (the dashboard and rules test rely on it).
	lint, err := testutil.CollectAndLint(NewCollector(a))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lint {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectorFailedScan: a failed scan keeps the last report and says so.
func TestCollectorFailedScan(t *testing.T) {
	a, _ := New(Options{Interval: time.Minute})
	if n := testutil.CollectAndCount(NewCollector(a), "closewait_process_close_wait_sockets"); n != 0 {
		t.Errorf("before any scan: %d process series", n)
	}
	a.state.Store(&State{Time: time.Now(), Err: errors.New("netlink: permission denied")})
	if v := testutil.ToFloat64(metricOnly(t, a, "closewait_scrape_success")); v != 0 {
		t.Errorf("scrape_success after a failed scan = %v, want 0", v)
	}
	if ok, why := a.Healthy(time.Now()); ok || !strings.Contains(why, "permission denied") {
		t.Errorf("Healthy = %v %q", ok, why)
	}
}

func metricOnly(t *testing.T, a *Agent, name string) *filtered {
	return &filtered{NewCollector(a), name}
}

type filtered struct {
	*Collector
	name string
}

// Collect passes on only the metrics of one family.
func (f *filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { f.Collector.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+f.name+`"`) {
			ch <- m
		}
	}
}
