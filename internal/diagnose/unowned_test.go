package diagnose

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/snapshot"
)

// TestUnownedGroups: sockets no visible process holds are grouped by uid
// and port or remote, explained by Recv-Q and judged by count and age.
func TestUnownedGroups(t *testing.T) {
	unowned := func(n int, uid uint32, sp sockSpec) []snapshot.Socket {
		out := many(n, sp)
		for i := range out {
			out[i].Owners, out[i].UID = nil, uid
		}
		return out
	}
	mapped := netip.MustParseAddrPort("[::ffff:10.0.3.7]:5432")
	snap := snapOf("/usr/bin/java",
		unowned(150, 0, sockSpec{inbound: true, age: 40 * time.Minute}),
		unowned(20, 0, sockSpec{remote: db, recvQ: 1, age: time.Minute, idle: time.Minute}),
		unowned(5, 0, sockSpec{remote: mapped, recvQ: 1, age: time.Minute, idle: time.Minute}),
		unowned(3, 1000, sockSpec{inbound: true, recvQ: 1, age: 2 * time.Second}),
	)
	r := Analyze(snap, DefaultThresholds, Options{})
	if r.Unattributed.Count != 178 {
		t.Fatalf("count %d", r.Unattributed.Count)
	}
	type brief struct {
		UID    uint32
		Where  string
		Count  int
		Cause  string
		Status Status
	}
	var got []brief
	for _, g := range r.Unattributed.Groups {
		got = append(got, brief{g.UID, g.Where(), g.Count, g.Cause(), g.Status})
	}
	want := []brief{
		{0, "on port 8080", 150, CauseMissingClose, Critical}, // > 100 and > 30 min
		{0, "to 10.0.3.7:5432", 25, CausePoolIdle, OK},        // the IPv4-mapped remote is the same
		{1000, "on port 8080", 3, CauseAbandonedUnread, OK},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if r.Unattributed.Groups[0].User != "root" {
		t.Errorf("user %q", r.Unattributed.Groups[0].User)
	}
}
