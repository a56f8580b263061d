package leakcheck

import (
	"testing"
	"time"
)

// DefaultVerifyGrace is how long [VerifyNone] waits for connections in
// CLOSE_WAIT to be closed before it fails the test.
const DefaultVerifyGrace = time.Second

// VerifyNone fails tb (with Errorf, so the test goes on) if any connection
// tracked by tr is in CLOSE_WAIT, printing the report. Connections being
// closed concurrently get [DefaultVerifyGrace] to finish: the check is
// repeated until none is left or the grace period ends. Call it at the end
// of a test, after the peers have closed their side, or with defer /
// tb.Cleanup:
//
//	tr := leakcheck.New(nil)
//	defer leakcheck.VerifyNone(t, tr)
func VerifyNone(tb testing.TB, tr *Tracker) {
	tb.Helper()
	VerifyNoneWithin(tb, tr, DefaultVerifyGrace)
}

// VerifyNoneWithin is [VerifyNone] with a grace period of d.
func VerifyNoneWithin(tb testing.TB, tr *Tracker, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	wait := time.Millisecond
	for {
		rep := tr.Report()
		if !rep.Leaks() {
			return
		}
		if time.Now().After(deadline) {
			tb.Errorf("leakcheck: %d connection(s) left in CLOSE_WAIT:\n%s", rep.CloseWait, rep)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}
