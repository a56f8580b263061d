package diagnose

import (
	"testing"
	"time"
)

// TestThresholdParts: the fd-share and age judgements alone, as the
// dashboard's tiles use them, agree with the whole judgement.
func TestThresholdParts(t *testing.T) {
	th := Thresholds{FDShareWarning: 0.4, FDShareCritical: 0.5, AgeWarning: 5 * time.Minute, AgeCritical: 30 * time.Minute}
	for _, tt := range []struct {
		share float64
		age   time.Duration
		fd    Status
		aged  Status
	}{
		{0.4, 5 * time.Minute, OK, OK},
		{0.41, 5*time.Minute + 1, Warning, Warning},
		{0.5, 30 * time.Minute, Warning, Warning},
		{0.51, 31 * time.Minute, Critical, Critical},
	} {
		if got := th.FDShareStatus(tt.share); got != tt.fd {
			t.Errorf("FDShareStatus(%v) = %v, want %v", tt.share, got, tt.fd)
		}
		if got := th.AgeStatus(tt.age); got != tt.aged {
			t.Errorf("AgeStatus(%v) = %v, want %v", tt.age, got, tt.aged)
		}
		if st, _ := th.Judge(1, tt.share, tt.age, true); st != max(tt.fd, tt.aged) {
			t.Errorf("judge(%v, %v) = %v, want %v", tt.share, tt.age, st, max(tt.fd, tt.aged))
		}
	}
	if (Thresholds{}).FDShareStatus(1) != OK || (Thresholds{}).AgeStatus(time.Hour) != OK {
		t.Errorf("zero thresholds judge something")
	}
}
