package snapshot

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockevents"
)

// TestNamespaceRunsRecorded: a snapshot dumped in full and one built from
// the change feed both record the namespace of each run of their sockets,
// which the next snapshot from the feed takes instead of reading every
// socket's namespace.
func TestNamespaceRunsRecorded(t *testing.T) {
	feed, err := sockevents.Open()
	cwtest.SkipIfNotSupported(t, err, sockevents.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	name := cwtest.NewNetNS(t)
	cwtest.Start(t, cwtest.Spec{Unread: 2})
	cwtest.Start(t, cwtest.Spec{NetNS: name, Unread: 1})
	var prev *Snapshot
	for i, want := range []string{ChangesFull, ChangesApplied, ChangesApplied} {
		succ := Successive{Previous: prev, Changes: feed}
		if prev != nil {
			succ.CarryInfo, succ.ReuseByProcess, succ.SkipUnowned = true, true, true
		}
		snap, err := TakeAfter(Options{}, succ)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Stats.Changes != want {
			t.Fatalf("snapshot %d: Stats.Changes %q, want %q", i+1, snap.Stats.Changes, want)
		}
		if !snap.runsOK() {
			t.Fatalf("snapshot %d: runs %v do not cover its %d sockets", i+1, snap.nsRuns, len(snap.Sockets))
		}
		namespaces := map[uint64]bool{}
		for _, r := range snap.nsRuns {
			namespaces[r.netns] = true
			for j := r.start; j < r.end; j++ {
				if ns := snap.Sockets[j].NetNS; ns != r.netns {
					t.Fatalf("snapshot %d: socket %d is in namespace %d, its run says %d", i+1, j, ns, r.netns)
				}
			}
		}
		if len(namespaces) < 2 {
			t.Errorf("snapshot %d: runs of %d namespaces, want the test's two at least", i+1, len(namespaces))
		}
		prev = snap
	}
}
