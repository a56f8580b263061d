package agent

import (
	"errors"
	"regexp"
	"runtime"
	"slices"
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
		f := diagnose.Finding{Cause: c, Count: cw / len(causes)}
		if c == diagnose.CausePoolIdle {
			f.Direction, f.Remote, f.RemoteIdleTimeout = "outbound", "10.0.3.7:5432", 600
		}
		p.Findings = append(p.Findings, f)
	}
	return p
}

// TestCollectorTopN checks the exposition of a constructed report: the top N
// processes by CLOSE_WAIT get their own series, the rest one "other" series
// (sum of counts, oldest age, highest fd share), findings by cause.
func TestCollectorTopN(t *testing.T) {
	a, err := New(Options{TopN: 2, Interval: time.Minute, Version: "1.2.3"})
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
# HELP closewait_process_finding_sockets CLOSE_WAIT sockets of the process explained by each finding cause (growing, fd-exhausted, abandoned-unread, missing-close, not-accepted, pool-idle, normal-half-close); top N only.
# TYPE closewait_process_finding_sockets gauge
closewait_process_finding_sockets{cause="missing-close",comm="java",pid="10"} 60
closewait_process_finding_sockets{cause="pool-idle",comm="java",pid="10"} 60
# HELP closewait_pool_idle_sockets CLOSE_WAIT sockets of a pool-idle finding: idle pooled connections of the process to one upstream (remote) that the server closed (top N processes only).
# TYPE closewait_pool_idle_sockets gauge
closewait_pool_idle_sockets{comm="java",pid="10",remote="10.0.3.7:5432"} 60
# HELP closewait_pool_idle_server_timeout_seconds The upstream's idle timeout estimated from a pool-idle finding (tcp_info: last data received minus the FIN's arrival, median); evict idle pooled connections sooner than this (top N processes only).
# TYPE closewait_pool_idle_server_timeout_seconds gauge
closewait_pool_idle_server_timeout_seconds{comm="java",pid="10",remote="10.0.3.7:5432"} 600
# HELP closewait_process_status Process status by the agent's thresholds: 0 ok, 1 warning, 2 critical (top N only).
# TYPE closewait_process_status gauge
closewait_process_status{comm="java",pid="10"} 2
closewait_process_status{comm="node",pid="30"} 0
# HELP closewait_scan_errors_total Scans that failed since the agent started.
# TYPE closewait_scan_errors_total counter
closewait_scan_errors_total 2
# HELP closewait_scan_duration_seconds Time the latest scan (socket dump, owner search, diagnosis) took.
# TYPE closewait_scan_duration_seconds gauge
closewait_scan_duration_seconds 0.25
# HELP closewait_scan_success 1 if the latest scan succeeded, else 0.
# TYPE closewait_scan_success gauge
closewait_scan_success 1
# HELP closewait_last_scan_timestamp_seconds Unix time the latest scan ended.
# TYPE closewait_last_scan_timestamp_seconds gauge
closewait_last_scan_timestamp_seconds 1.700000001e+09
# HELP closewait_build_info Always 1; the labels say which closewait build runs and with which Go.
# TYPE closewait_build_info gauge
closewait_build_info{goversion="` + runtime.Version() + `",version="1.2.3"} 1
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
		"closewait_process_fd_usage_ratio", "closewait_process_finding_sockets", "closewait_process_status",
		"closewait_pool_idle_sockets", "closewait_pool_idle_server_timeout_seconds",
		"closewait_scan_errors_total", "closewait_scan_duration_seconds", "closewait_scan_success",
		"closewait_last_scan_timestamp_seconds", "closewait_build_info",
		"closewait_status", "closewait_unattributed_close_wait_sockets", "closewait_processes_with_close_wait"}
	if err := testutil.CollectAndCompare(NewCollector(a), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewCollector(a), "closewait_sockets"); n != len(sockdiag.States()) {
		t.Errorf("closewait_sockets has %d series, want one per state (%d)", n, len(sockdiag.States()))
	}
	// State labels as node_exporter's tcpstat writes them, so the two join.
	states := `
# HELP closewait_sockets TCP sockets on the host (the namespaces the agent reads) by state, labelled as node_exporter's node_tcp_connection_states.
# TYPE closewait_sockets gauge
closewait_sockets{state="close"} 0
closewait_sockets{state="close_wait"} 170
closewait_sockets{state="closing"} 0
closewait_sockets{state="established"} 9
closewait_sockets{state="fin_wait1"} 0
closewait_sockets{state="fin_wait2"} 0
closewait_sockets{state="last_ack"} 0
closewait_sockets{state="listen"} 0
closewait_sockets{state="new_syn_recv"} 0
closewait_sockets{state="syn_recv"} 0
closewait_sockets{state="syn_sent"} 0
closewait_sockets{state="time_wait"} 0
`
	if err := testutil.CollectAndCompare(NewCollector(a), strings.NewReader(states), "closewait_sockets"); err != nil {
		t.Error(err)
	}
	lint, err := testutil.CollectAndLint(NewCollector(a))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lint {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricNamesComplete: MetricNames lists exactly the families the
// collector describes (the dashboard and rules tests rely on it), and no
// old name is still exported.
func TestMetricNamesComplete(t *testing.T) {
	a, _ := New(Options{Interval: time.Minute})
	ch := make(chan *prometheus.Desc, 64)
	NewCollector(a).Describe(ch)
	close(ch)
	var described []string
	for d := range ch {
		m := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())
		described = append(described, m[1])
	}
	slices.Sort(described)
	names := slices.Sorted(slices.Values(MetricNames))
	if !slices.Equal(described, names) {
		t.Errorf("described %v\nMetricNames %v", described, names)
	}
	for old, now := range RenamedMetrics {
		if slices.Contains(names, old) || !slices.Contains(names, now) {
			t.Errorf("renamed %s -> %s: old still exported or new missing", old, now)
		}
	}
}

// TestCollectorFailedScan: a failed scan keeps the last report and says so.
func TestCollectorFailedScan(t *testing.T) {
	a, _ := New(Options{Interval: time.Minute})
	if n := testutil.CollectAndCount(NewCollector(a), "closewait_process_close_wait_sockets"); n != 0 {
		t.Errorf("before any scan: %d process series", n)
	}
	a.state.Store(&State{Time: time.Now(), Err: errors.New("netlink: permission denied")})
	if v := testutil.ToFloat64(metricOnly(t, a, "closewait_scan_success")); v != 0 {
		t.Errorf("scan_success after a failed scan = %v, want 0", v)
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
