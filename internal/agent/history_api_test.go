package agent_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
)

// TestHistoryJSONTimesAndHostAge: the host history carries the oldest
// CLOSE_WAIT age (it used to say 0 always), at least that of a real holder's
// sockets, and every time in the answer is RFC 3339 (the Unix "time" of a
// point is kept beside it and agrees).
func TestHistoryJSONTimesAndHostAge(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	scan(t, a)
	time.Sleep(20 * time.Millisecond) // the sockets' tcp_info age grows past a millisecond
	scan(t, a)
	holderAge, ok := metric(t, url, "closewait_process_close_wait_oldest_age_seconds", h.PID)
	if !ok || holderAge <= 0 {
		t.Fatalf("holder %d: oldest age %v (present %v)", h.PID, holderAge, ok)
	}
	for _, path := range []string{"/api/v1/history", fmt.Sprintf("/api/v1/history?pid=%d", h.PID)} {
		code, body := get(t, url+path)
		var raw struct {
			Since  string `json:"since"`
			Points []struct {
				Timestamp string   `json:"timestamp"`
				Time      int64    `json:"time"`
				OldestAge *float64 `json:"oldest_age_seconds"`
			} `json:"points"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &raw) != nil || len(raw.Points) != 2 {
			t.Fatalf("%s: %d %.300s", path, code, body)
		}
		if _, err := time.Parse(time.RFC3339, raw.Since); err != nil {
			t.Errorf("%s: since %q: %v", path, raw.Since, err)
		}
		for _, p := range raw.Points {
			ts, err := time.Parse(time.RFC3339, p.Timestamp)
			if err != nil || ts.Unix() != p.Time || ts.Location() != time.UTC {
				t.Errorf("%s: point timestamp %q (%v) vs time %d", path, p.Timestamp, err, p.Time)
			}
		}
		last := raw.Points[1].OldestAge
		if last == nil || *last < holderAge {
			t.Errorf("%s: last point's oldest_age_seconds %v, want at least the holder's %v", path, last, holderAge)
		}
	}
}
