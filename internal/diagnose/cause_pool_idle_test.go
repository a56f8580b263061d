package diagnose

import (
	"strings"
	"testing"
	"time"
)

// TestPoolIdleGoodbye: a server that says goodbye before closing idle
// sessions leaves the same small byte count on each pooled socket, with the
// data arriving with the FIN after a silence: pool-idle, not
// abandoned-unread, with the server's idle timeout from the silence.
func TestPoolIdleGoodbye(t *testing.T) {
	line := uint32(len("FATAL: terminating connection due to idle-session timeout\n"))
	goodbye := sockSpec{remote: db, recvQ: line + 1, age: 3 * time.Minute, sent: 3*time.Minute + 1100*time.Millisecond}
	p := analyzeOne(t, snapOf("/usr/bin/java", many(6, goodbye)), Options{})
	if len(p.Findings) != 1 {
		t.Fatalf("findings %v", briefs(p.Findings))
	}
	f := p.Findings[0]
	if f.Cause != CausePoolIdle || f.Remote != db.String() || f.RemoteIdleTimeout != 1.1 {
		t.Fatalf("finding %+v", f)
	}
	ev := strings.Join(f.Evidence, "\n")
	for _, w := range []string{"said goodbye", "the same 58 bytes on each", "about 1.1 s idle", "last data sent minus the goodbye's arrival"} {
		if !strings.Contains(ev, w) {
			t.Errorf("evidence lacks %q:\n%s", w, ev)
		}
	}
	// HikariCP cannot go below 10 s: say so and what works instead.
	fix := strings.Join(f.Fix, "\n")
	if !strings.Contains(fix, "HikariCP's idleTimeout cannot go below 10s") || !strings.Contains(fix, "raise its idle timeout") {
		t.Errorf("fix:\n%s", fix)
	}
	if strings.Contains(fix, "idleTimeout=") {
		t.Errorf("fix names an idleTimeout HikariCP refuses:\n%s", fix)
	}

	// Data that did not come with the FIN, or no silence before it, is not a goodbye.
	for name, sp := range map[string]sockSpec{
		"data long before the FIN": {remote: db, recvQ: line + 1, age: 3 * time.Minute, idle: time.Minute, sent: 5 * time.Minute},
		"an answer, not a goodbye": {remote: db, recvQ: line + 1, age: 3 * time.Minute, sent: 3*time.Minute + 100*time.Millisecond},
		"inbound":                  {inbound: true, recvQ: line + 1, age: 3 * time.Minute, sent: 4 * time.Minute},
	} {
		if c := analyzeOne(t, snapOf("/usr/bin/java", many(6, sp)), Options{}).Findings[0].Cause; c != CauseAbandonedUnread {
			t.Errorf("%s: %s", name, c)
		}
	}
}

// TestPoolIdleLibrarySettings: a detected library's settings come first,
// with values in its units and limits.
func TestPoolIdleLibrarySettings(t *testing.T) {
	snap := snapOf("/usr/bin/java", many(6, sockSpec{remote: db, recvQ: 1, age: time.Hour, idle: 60 * time.Second}))
	snap.Processes[testPID].Cmdline = "java -cp app.jar:lib/HikariCP-5.1.0.jar Main"
	f := analyzeOne(t, snap, Options{}).Findings[0]
	if f.Fix[0] != "HikariCP: maxLifetime=48000 and idleTimeout=48000, so connections retire before the server drops them; or keepaliveTime=48000 with the default maxLifetime, so HikariCP pings idle connections before the server's timeout" {
		t.Errorf("fix %q", f.Fix)
	}
	if strings.Contains(strings.Join(f.Fix, "\n"), "Apache HttpClient") {
		t.Errorf("a detected library's advice only: %q", f.Fix)
	}
}
