package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
)

func TestWriteExplain(t *testing.T) {
	steps := []string{"jcmd 4121 Thread.print"}
	p := &diagnose.ProcessReport{
		PID: 4121, Runtime: "java", RuntimeEvidence: "libjvm.so is mapped",
		Process:   &procscan.Process{PID: 4121, Comm: "java", Cmdline: "java -jar payments.jar", User: "svc", UID: 1001, OpenFDs: 1290, FDSoft: 2048},
		CloseWait: 1204, Oldest: 3*time.Hour + 12*time.Minute, HasAge: true, Status: diagnose.Critical,
		Reasons: []string{"critical: fds at 63% of the limit > 50%"},
		Growth:  &diagnose.Growth{Interval: 10 * time.Second, Entered: 33, EnteredPerMin: 198, NetPerMin: 198, HasETA: true, ETA: 3*time.Minute + 50*time.Second},
		Threads: &diagnose.ThreadSummary{Total: 50, Groups: []diagnose.ThreadGroup{{State: "sleeping", Wait: "futex_wait_queue (futex)", Count: 48}, {State: "running", Count: 2}}},
		Findings: []diagnose.Finding{
			{Cause: "pool-idle", Direction: "outbound", Remote: "10.0.3.7:5432", Count: 1150, Oldest: 11520, RemoteIdleTimeout: 600,
				Evidence: []string{"1150 of 1204 sockets to 10.0.3.7:5432 have Recv-Q 1"}, Check: "ss -tnp state close-wait dst 10.0.3.7:5432",
				NextSteps: steps, Fix: []string{"HikariCP: idleTimeout"}},
			{Cause: "missing-close", Direction: "inbound", LocalPort: 8080, Count: 54, Oldest: 60,
				Evidence: []string{"54 of 54 sockets on port 8080 have Recv-Q 0"}, Check: "ss -tnp state close-wait '( sport = :8080 )'",
				NextSteps: steps, Fix: []string{"try-with-resources"}},
		},
	}
	var b bytes.Buffer
	if err := WriteExplain(&b, p, ExplainOptions{Now: time.Date(2026, 11, 25, 15, 46, 2, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Process:      4121 java\n",
		"Runtime:      java (libjvm.so is mapped)\n",
		"Status:       CRITICAL\n  ! critical: fds at 63% of the limit > 50%\n",
		"CLOSE_WAIT:   1,204 sockets, oldest ~3h12m (since about 2026-11-25 12:34:02 UTC)\n",
		"FDs:          1,290 open of 2,048 (63%), 758 free before EMFILE\n",
		"fd limit reached in about 3m50s",
		"Threads:      48 of 50 threads sleeping in futex_wait_queue (futex), 2 running\n",
		"  1. pool-idle: idle pooled connections the server closed\n     outbound to 10.0.3.7:5432 · 1,150 sockets · oldest ~3h12m · server idle timeout ~600.0 s\n",
		"     Check:\n       ss -tnp state close-wait dst 10.0.3.7:5432\n",
		"  2. missing-close: read to EOF and never closed\n     inbound on port 8080 · 54 sockets",
		"     Next steps: as in 1.\n",
		"     Fix:\n       try-with-resources\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour without Color")
	}
}

func TestFindingLine(t *testing.T) {
	f := diagnose.Finding{Cause: "pool-idle", Direction: "outbound", Remote: "10.0.3.7:5432", Count: 3, Oldest: 90, Evidence: []string{"first", "second"}}
	if got, want := FindingLine(f), "pool-idle (outbound to 10.0.3.7:5432): 3 sockets, oldest 1m30s. first"; got != want {
		t.Errorf("FindingLine = %q, want %q", got, want)
	}
}
