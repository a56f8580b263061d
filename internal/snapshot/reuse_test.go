package snapshot_test

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/snapshot"
)

// TestTakeReuseByProcessAndSkipUnowned: with ReuseByProcess the holder's
// owners are kept while it lives; with SkipUnowned sockets the previous
// snapshot left unattributed are not searched again (and are without it).
func TestTakeReuseByProcessAndSkipUnowned(t *testing.T) {
	skipUnlessRoot(t)
	h := cwtest.Start(t, cwtest.Spec{Unread: 2, ReadEOF: 1})
	first, err := snapshot.Take(snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: first, ReuseByProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	got := mine(second, h)
	if len(got) != 3 {
		t.Fatalf("%d of the holder's 3 sockets listed", len(got))
	}
	for _, s := range got {
		if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
			t.Errorf("owners of %v kept by process: %v", s.Remote, s.Owners)
		}
	}

	// Pretend the previous snapshot found no owner for the holder's sockets.
	blind := *second
	blind.Sockets = append([]snapshot.Socket(nil), second.Sockets...)
	for i := range blind.Sockets {
		for _, c := range h.Conns {
			if blind.Sockets[i].Local == c.Local && blind.Sockets[i].Remote == c.Remote {
				blind.Sockets[i].Owners = nil
			}
		}
	}
	for _, tc := range []struct {
		skip   bool
		owners int
	}{{true, 0}, {false, 1}} {
		snap, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: &blind, ReuseByProcess: true, SkipUnowned: tc.skip})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range mine(snap, h) {
			if len(s.Owners) != tc.owners {
				t.Errorf("SkipUnowned %v: socket %v has %d owners, want %d", tc.skip, s.Remote, len(s.Owners), tc.owners)
			}
		}
	}

	// An owner that exited is not trusted: its sockets are gone with it.
	h.Stop()
	third, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: second, ReuseByProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mine(third, h)); n != 0 {
		t.Errorf("%d sockets of a stopped holder still listed", n)
	}
}
