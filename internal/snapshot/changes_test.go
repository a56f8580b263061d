package snapshot_test

import (
	"fmt"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockevents"
)

// openFeed opens the eBPF change feed, skipping the test where it cannot
// run (no kernel BTF, not root); as root with BTF a failure is a failure.
func openFeed(t *testing.T) *sockevents.Feed {
	t.Helper()
	f, err := sockevents.Open()
	cwtest.SkipIfNotSupported(t, err, sockevents.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sockView is what a test compares of one socket between two snapshots.
type sockView struct {
	inode, cookie uint64
	recvQ         uint32
	owners        string
	notAccepted   bool
}

// holderSockets returns the snapshot's sockets of the holders' connections
// (namespace ns for each holder), keyed by local and remote address.
func holderSockets(snap *snapshot.Snapshot, hs map[*cwtest.Holder]uint64) map[string]sockView {
	want := map[string]bool{}
	for h, ns := range hs {
		for _, c := range h.Conns {
			want[key(ns, c.Local.String(), c.Remote.String())] = true
		}
	}
	out := map[string]sockView{}
	for _, s := range snap.Sockets {
		k := key(s.NetNS, s.Local.String(), s.Remote.String())
		if want[k] {
			out[k] = sockView{s.Inode, s.Cookie, s.RecvQ, ownersText(s.Owners), s.NotAccepted}
		}
	}
	return out
}

func key(ns uint64, local, remote string) string {
	return fmt.Sprintf("%s %s @%d", local, remote, ns)
}

func ownersText(os []procscan.Owner) string { return fmt.Sprint(os) }

func TestTakeAppliesChangeFeed(t *testing.T) {
	feed := openFeed(t)
	name := cwtest.NewNetNS(t)
	other, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	own, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	gone := cwtest.Start(t, cwtest.Spec{Unread: 2, ReadEOF: 1})
	stays := cwtest.Start(t, cwtest.Spec{Unread: 1, ReadEOF: 1, NotAccepted: 1})

	base, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Changes: feed})
	if err != nil {
		t.Fatal(err)
	}
	if base.Stats.Changes != snapshot.ChangesFull {
		t.Fatalf("first snapshot: Stats.Changes = %q, want %q", base.Stats.Changes, snapshot.ChangesFull)
	}
	if got := holderSockets(base, map[*cwtest.Holder]uint64{gone: own}); len(got) != 3 {
		t.Fatalf("base snapshot holds %d of the 3 sockets of the first holder", len(got))
	}

	// Between the snapshots: one holder exits, two start (one in another
	// network namespace, one dialling out over IPv6).
	gone.Stop()
	fresh := cwtest.Start(t, cwtest.Spec{Network: "tcp6", Unread: 2, ReadEOF: 1})
	inNS := cwtest.Start(t, cwtest.Spec{NetNS: name, Unread: 1, ReadEOF: 1})

	incr := func(prev *snapshot.Snapshot) *snapshot.Snapshot {
		t.Helper()
		s, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: prev, Changes: feed, CarryInfo: true, ReuseByProcess: true, SkipUnowned: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	applied := incr(base)
	full, err := snapshot.Take(snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Stats.Changes != snapshot.ChangesApplied {
		t.Fatalf("incremental snapshot: Stats.Changes = %q, want %q", applied.Stats.Changes, snapshot.ChangesApplied)
	}
	if applied.Stats.ChangeEvents < 3+3+2 {
		t.Errorf("incremental snapshot saw %d changes, want at least 8 (3 left, 5 entered)", applied.Stats.ChangeEvents)
	}
	hs := map[*cwtest.Holder]uint64{gone: own, stays: own, fresh: own, inNS: other}
	got, want := holderSockets(applied, hs), holderSockets(full, hs)
	if len(want) != 3+3+2 {
		t.Fatalf("the full snapshot holds %d of the holders' 8 CLOSE_WAIT sockets: %v", len(want), want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: in the full snapshot, missing from the one built from changes", k)
		} else if g != w {
			t.Errorf("%s: built from changes %+v, dumped %+v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: in the snapshot built from changes only (the first holder's sockets are closed)", k)
		}
	}
	n := 0
	for _, s := range applied.Sockets {
		if s.State == sockdiag.CloseWait {
			n++
		}
	}
	if applied.States[sockdiag.CloseWait] != n {
		t.Errorf("States counts %d CLOSE_WAIT, Sockets lists %d", applied.States[sockdiag.CloseWait], n)
	}

	// The feed is only trusted right after the snapshot that drained it.
	if _, err := feed.Drain(func(*sockevents.Event) {}); err != nil {
		t.Fatal(err)
	}
	if s := incr(applied); s.Stats.Changes != snapshot.ChangesFull {
		t.Errorf("after a drain by someone else: Stats.Changes = %q, want %q", s.Stats.Changes, snapshot.ChangesFull)
	}
	if s := incr(full); s.Stats.Changes != snapshot.ChangesFull {
		t.Errorf("Previous taken without the feed: Stats.Changes = %q, want %q", s.Stats.Changes, snapshot.ChangesFull)
	}
}

// lossyFeed is the real feed, except that its next drain reports lost
// changes, as after a ring overflow.
type lossyFeed struct {
	*sockevents.Feed
	lose bool
}

func (f *lossyFeed) Drain(fn func(*sockevents.Event)) (bool, error) {
	complete, err := f.Feed.Drain(fn)
	if f.lose {
		f.lose = false
		return false, err
	}
	return complete, err
}

// TestTakeAfterLostChanges: when the feed lost changes, the next snapshot
// dumps every CLOSE_WAIT socket, and the one after applies changes again.
func TestTakeAfterLostChanges(t *testing.T) {
	feed := &lossyFeed{Feed: openFeed(t)}
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	succ := func(prev *snapshot.Snapshot) snapshot.Successive {
		return snapshot.Successive{Previous: prev, Changes: feed, CarryInfo: true, ReuseByProcess: true, SkipUnowned: true}
	}
	var prev *snapshot.Snapshot
	for i, tt := range []struct {
		lose bool
		want string
	}{
		{false, snapshot.ChangesFull}, // no previous snapshot
		{false, snapshot.ChangesApplied},
		{true, snapshot.ChangesFull},
		{false, snapshot.ChangesApplied},
	} {
		feed.lose = tt.lose
		s, err := snapshot.TakeAfter(snapshot.Options{}, succ(prev))
		if err != nil {
			t.Fatal(err)
		}
		if s.Stats.Changes != tt.want {
			t.Errorf("snapshot %d (lost changes: %v): Stats.Changes = %q, want %q", i+1, tt.lose, s.Stats.Changes, tt.want)
		}
		if got := holderSockets(s, map[*cwtest.Holder]uint64{h: s.NetNS}); len(got) != 2 {
			t.Errorf("snapshot %d: %d of the holder's 2 sockets", i+1, len(got))
		}
		prev = s
	}
}

// TestAppliedOwners: a snapshot built from the change feed takes the owners
// of the sockets it carries over from Previous, searches those that are new
// since, and, for the carried sockets Previous found no owner for (here:
// Previous looked for none), searches again only without SkipUnowned.
func TestAppliedOwners(t *testing.T) {
	feed := openFeed(t)
	old := cwtest.Start(t, cwtest.Spec{Unread: 2, ReadEOF: 1, NotAccepted: 1})
	for _, tt := range []struct {
		name        string
		prevOwners  bool // Previous found owners
		skipUnowned bool
		wantOld     bool // the carried sockets have their owner
	}{
		{"carried with owners", true, true, true},
		{"carried unowned, skipped", false, true, false},
		{"carried unowned, searched again", false, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prev, err := snapshot.TakeAfter(snapshot.Options{NoOwners: !tt.prevOwners}, snapshot.Successive{Changes: feed})
			if err != nil {
				t.Fatal(err)
			}
			fresh := cwtest.Start(t, cwtest.Spec{Unread: 1, ReadEOF: 1})
			s, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{
				Previous: prev, Changes: feed, CarryInfo: true, ReuseByProcess: true, SkipUnowned: tt.skipUnowned,
			})
			if err != nil {
				t.Fatal(err)
			}
			if s.Stats.Changes != snapshot.ChangesApplied {
				t.Fatalf("Stats.Changes = %q, want %q", s.Stats.Changes, snapshot.ChangesApplied)
			}
			check := func(h *cwtest.Holder, wantOwned bool, what string) {
				t.Helper()
				socks := holderSockets(s, map[*cwtest.Holder]uint64{h: s.NetNS})
				if len(socks) != len(h.Conns) {
					t.Fatalf("%s: %d of the holder's %d sockets", what, len(socks), len(h.Conns))
				}
				for k, v := range socks {
					// An accepted socket is held through its fd; one in
					// the accept queue by the listener's owner (fd -1),
					// whose owner follows the same rule.
					want := "[]"
					if wantOwned {
						fd := "-1"
						if !v.notAccepted {
							fd = "" // any fd
						}
						want = fmt.Sprintf("[{%d %s", h.PID, fd)
					}
					if got := v.owners; len(got) < len(want) || got[:len(want)] != want {
						t.Errorf("%s %s: owners %s, want %s...", what, k, got, want)
					}
				}
			}
			check(old, tt.wantOld, "carried")
			check(fresh, true, "new")
		})
	}
}
