package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestGrowingFixFollowsDirection: a growing outbound leak gets the client's fix.
func TestGrowingFixFollowsDirection(t *testing.T) {
	before := snapOf("/opt/app/server", many(10, sockSpec{remote: db, age: time.Minute}))
	after := snapOf("/opt/app/server", before.Sockets, many(40, sockSpec{remote: db, age: time.Second}))
	after.Time = before.Time.Add(10 * time.Second)
	p := analyzeOne(t, after, Options{Previous: NewBaseline(before)})
	p.Runtime = "go"
	if p.Findings[0].Cause != CauseGrowing || p.Findings[0].Direction != "outbound" {
		t.Fatalf("findings %v", briefs(p.Findings))
	}
	if fix := strings.Join(p.Findings[0].Fix, "\n"); !strings.Contains(fix, "close the descriptor") {
		t.Errorf("fix %q", fix)
	}
}
