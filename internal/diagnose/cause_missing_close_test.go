package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestMissingCloseAdviceFollowsDirection: a server's leak gets the
// handler's close, a client's the client's; a Python server hears nothing
// about the requests client library.
func TestMissingCloseAdviceFollowsDirection(t *testing.T) {
	in := analyzeOne(t, snapOf("/usr/bin/python3", many(20, sockSpec{inbound: true, age: time.Hour})), Options{}).Findings[0]
	out := analyzeOne(t, snapOf("/usr/bin/python3", many(20, sockSpec{remote: db, age: time.Hour})), Options{}).Findings[0]
	if in.Cause != CauseMissingClose || out.Cause != CauseMissingClose {
		t.Fatalf("causes %s, %s", in.Cause, out.Cause)
	}
	inFix, outFix := strings.Join(in.Fix, "\n"), strings.Join(out.Fix, "\n")
	if strings.Contains(inFix, "requests") || !strings.Contains(inFix, "accepted socket") {
		t.Errorf("inbound fix:\n%s", inFix)
	}
	if !strings.Contains(outFix, "requests: with session.get") {
		t.Errorf("outbound fix:\n%s", outFix)
	}
	if !strings.Contains(in.Evidence[0], "Recv-Q 0: the app read up to EOF") {
		t.Errorf("evidence %q", in.Evidence)
	}
}
