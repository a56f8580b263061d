package snapshot_test

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/snapshot"
)

// inNS returns the snapshot's sockets of holder h in namespace ino.
func inNS(snap *snapshot.Snapshot, h *cwtest.Holder, ino uint64) map[string]snapshot.Socket {
	out := map[string]snapshot.Socket{}
	for _, s := range snap.Sockets {
		for _, c := range h.Conns {
			if s.NetNS == ino && s.Local == c.Local && s.Remote == c.Remote {
				out[c.Mode] = s
			}
		}
	}
	return out
}

func TestTakeReadsEveryNetworkNamespace(t *testing.T) {
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	hn := cwtest.Start(t, cwtest.Spec{NetNS: name, ReadEOF: 1, Unread: 1, NotAccepted: 1})
	hr := cwtest.Start(t, cwtest.Spec{Unread: 1})

	for _, tt := range []struct {
		name         string
		opt          snapshot.Options
		wantNS, root bool
	}{
		{"default: every namespace", snapshot.Options{}, true, true},
		{"CurrentNetNSOnly", snapshot.Options{CurrentNetNSOnly: true}, false, true},
		{"NetNS set", snapshot.Options{NetNS: map[uint64]bool{ino: true}}, true, false},
		{"proc/net fallback", snapshot.Options{ForceProcNet: true}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := snapshot.Take(tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if snap.NetNS == ino || snap.NetNS == 0 {
				t.Fatalf("snapshot's own namespace %d: want the test's, not %d", snap.NetNS, ino)
			}
			got := inNS(snap, hn, ino)
			if !tt.wantNS {
				if len(got) != 0 {
					t.Errorf("sockets of namespace %s read: %v", name, got)
				}
			} else {
				if len(got) != 3 {
					t.Fatalf("found %d of the 3 CLOSE_WAIT sockets of the holder in %s: %v", len(got), name, got)
				}
				for mode, s := range got {
					if len(s.Owners) != 1 || s.Owners[0].PID != hn.PID {
						t.Errorf("%s socket in %s: owners %v, want holder %d", mode, name, s.Owners, hn.PID)
					}
					if s.NotAccepted != (mode == "not-accepted") || !s.Inbound() {
						t.Errorf("%s socket in %s: not accepted %v, listener %v", mode, name, s.NotAccepted, s.Listener())
					}
				}
				ns, ok := snap.NamespaceOf(ino)
				if !ok || ns.PID != hn.PID || ns.Name != name {
					t.Errorf("namespace %d in the snapshot: %+v, %v; want pid %d, name %s", ino, ns, ok, hn.PID, name)
				}
				if snap.Processes[hn.PID] == nil {
					t.Errorf("holder %d in %s has no process facts", hn.PID, name)
				}
				sel := snap.Select(snapshot.Filter{NetNS: map[uint64]bool{ino: true}})
				for _, s := range sel {
					if s.NetNS != ino {
						t.Errorf("Filter.NetNS selected a socket of namespace %d", s.NetNS)
					}
				}
				if len(sel) < 3 {
					t.Errorf("Filter.NetNS selected %d sockets, want the holder's 3", len(sel))
				}
			}
			root := inNS(snap, hr, snap.NetNS)
			if tt.root != (len(root) == 1) {
				t.Errorf("root-namespace holder's socket found: %v, want %v", len(root) == 1, tt.root)
			}
		})
	}
}

// BenchmarkTakeNetNS compares a snapshot of every network namespace (the
// default) with one of the current namespace only, without the owner scan,
// to show what visiting the namespaces costs.
func BenchmarkTakeNetNS(b *testing.B) {
	for _, bb := range []struct {
		name string
		opt  snapshot.Options
	}{
		{"current", snapshot.Options{NoOwners: true, CurrentNetNSOnly: true}},
		{"all", snapshot.Options{NoOwners: true}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			ns := 0
			for b.Loop() {
				snap, err := snapshot.Take(bb.opt)
				if err != nil {
					b.Fatal(err)
				}
				ns = len(snap.Namespaces)
			}
			b.ReportMetric(float64(ns), "namespaces")
		})
	}
}
