package diagnose

import (
	"testing"
	"time"
)

// TestNormalHalfClose: few and young is normal; growth, age or numbers are not.
func TestNormalHalfClose(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int
		age  time.Duration
		want string
	}{
		{"three young", 3, 2 * time.Second, CauseNormalHalfClose},
		{"young but many", NormalHalfCloseMax + 1, 2 * time.Second, CauseMissingClose},
		{"few but old", 2, NormalHalfCloseAge + time.Second, CauseMissingClose},
	} {
		f := analyzeOne(t, snapOf("/usr/bin/java", many(tt.n, sockSpec{inbound: true, age: tt.age})), Options{}).Findings[0]
		if f.Cause != tt.want {
			t.Errorf("%s: %s", tt.name, f.Cause)
		}
		if f.Cause == CauseNormalHalfClose && (len(f.Fix) != 0 || len(f.NextSteps) != 1) {
			t.Errorf("%s: advice %q %q", tt.name, f.NextSteps, f.Fix)
		}
	}
}
