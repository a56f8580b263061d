package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestNotAcceptedWithFreeFDs: a queue that fills while the process has fds
// to spare is a stalled accept loop, not the fd limit.
func TestNotAcceptedWithFreeFDs(t *testing.T) {
	snap := snapOf("/usr/bin/python3", many(12, sockSpec{inbound: true, recvQ: 1, notAccepted: true, age: time.Minute}))
	f := analyzeOne(t, snap, Options{}).Findings[0]
	if f.Cause != CauseNotAccepted {
		t.Fatalf("cause %s", f.Cause)
	}
	if !strings.Contains(strings.Join(f.Fix, "\n"), "raise the worker count") || strings.Contains(strings.Join(f.NextSteps, "\n"), "prlimit") {
		t.Errorf("fix %q steps %q", f.Fix, f.NextSteps)
	}
	if !strings.HasPrefix(f.Check, "ss -ltn '( sport = :8080 )'") {
		t.Errorf("check %q", f.Check)
	}
}
