package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestAbandonedUnreadBlockedWorkers: with most threads waiting on a lock
// the advice is about the lock and the pool; with threads idle in accept it
// is the forgotten socket's close.
func TestAbandonedUnreadBlockedWorkers(t *testing.T) {
	tests := []struct {
		name, runtime string
		threads       *ThreadSummary
		want, not     string
	}{
		{"blocked on a lock", "/usr/bin/python3",
			&ThreadSummary{Total: 31, Groups: []ThreadGroup{{State: "sleeping", Wait: "futex_wait_queue (futex)", Count: 30}, {State: "sleeping", Wait: "inet_csk_accept (accept4)", Count: 1}}},
			"lock.acquire(timeout=", "with conn:"},
		{"idle in accept", "/usr/bin/python3",
			&ThreadSummary{Total: 3, Groups: []ThreadGroup{{State: "sleeping", Wait: "inet_csk_accept (accept4)", Count: 2}, {State: "sleeping", Wait: "futex_wait_queue (futex)", Count: 1}}},
			"with conn:", "lock.acquire"},
		{"go parks goroutines: futex says nothing", "/opt/app/server",
			&ThreadSummary{Total: 8, Groups: []ThreadGroup{{State: "sleeping", Wait: "futex_wait_queue (futex)", Count: 8}}},
			"every socket needs an owner", "lock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapOf(tt.runtime, many(30, sockSpec{inbound: true, recvQ: 1, age: time.Hour}))
			p := &ProcessReport{PID: testPID, Process: snap.Processes[testPID], Threads: tt.threads}
			p.Runtime, _ = ClassifyRuntime(RuntimeFacts{Exe: tt.runtime, Comm: "app"})
			if tt.runtime == "/opt/app/server" {
				p.Runtime = "go"
			}
			for i := range snap.Sockets {
				p.Sockets = append(p.Sockets, &snap.Sockets[i])
			}
			fs := Findings(p, snap)
			if len(fs) != 1 || fs[0].Cause != CauseAbandonedUnread {
				t.Fatalf("findings %v", briefs(fs))
			}
			all := strings.Join(append(append(fs[0].Evidence, fs[0].NextSteps...), fs[0].Fix...), "\n")
			if !strings.Contains(all, tt.want) || strings.Contains(strings.Join(fs[0].Fix, "\n"), tt.not) {
				t.Errorf("want %q, not %q in:\n%s", tt.want, tt.not, all)
			}
		})
	}
}
