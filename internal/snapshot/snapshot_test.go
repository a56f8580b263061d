package snapshot_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// mine returns the snapshot's sockets that belong to holder h, by its ports.
func mine(snap *snapshot.Snapshot, h *cwtest.Holder) map[netip.AddrPort]snapshot.Socket {
	out := map[netip.AddrPort]snapshot.Socket{}
	for _, s := range snap.Sockets {
		for _, c := range h.Conns {
			if s.Local == c.Local && s.Remote == c.Remote {
				out[s.Remote] = s
			}
		}
	}
	return out
}

func TestTakeAttributesHolderSockets(t *testing.T) {
	skipUnlessRoot(t)
	h4 := cwtest.Start(t, cwtest.Spec{ReadEOF: 3, Unread: 2, UnreadBytes: 100, NotAccepted: 1})
	h6 := cwtest.Start(t, cwtest.Spec{Network: "tcp6", ReadEOF: 1, Unread: 2})
	time.Sleep(100 * time.Millisecond)
	snap, err := snapshot.Take(snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Stats.Source != "netlink" {
		t.Errorf("source %q, want netlink", snap.Stats.Source)
	}
	for _, h := range []*cwtest.Holder{h4, h6} {
		got := mine(snap, h)
		if len(got) != len(h.Conns) {
			t.Fatalf("holder %d: snapshot has %d of its %d CLOSE_WAIT sockets", h.PID, len(got), len(h.Conns))
		}
		for _, c := range h.Conns {
			s := got[c.Remote]
			if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
				t.Errorf("holder %d %s socket %v: owners %v, want the holder alone", h.PID, c.Mode, c.Remote, s.Owners)
				continue
			}
			if (s.Owners[0].FD == -1) != (c.Mode == "not-accepted") || s.NotAccepted != (c.Mode == "not-accepted") {
				t.Errorf("%s socket: owner fd %d, NotAccepted %v", c.Mode, s.Owners[0].FD, s.NotAccepted)
			}
			if !s.Inbound() || s.Listener().Port() != h.Listen.Port() {
				t.Errorf("%s socket: listener %v, want inbound from %v", c.Mode, s.Listener(), h.Listen)
			}
			wantQ := map[string]uint32{"read-eof": 0, "unread": 1, "not-accepted": 1}[c.Mode]
			if c.Mode == "unread" && h == h4 {
				wantQ = 101
			}
			if s.RecvQ != wantQ {
				t.Errorf("%s socket: Recv-Q %d, want %d", c.Mode, s.RecvQ, wantQ)
			}
			if age, ok := s.Age(); !ok || age < 90*time.Millisecond || age > time.Minute {
				t.Errorf("%s socket: age %v (%v), want ≥ 90ms", c.Mode, age, ok)
			}
		}
		p := snap.Processes[h.PID]
		if p == nil {
			t.Fatalf("no facts for holder %d", h.PID)
		}
		if p.OpenFDs < len(h.Conns) || p.FDSoft == 0 || p.FDHard < p.FDSoft || p.Cmdline == "" || p.User != "root" {
			t.Errorf("holder facts: %+v", p)
		}
	}
	if snap.States[sockdiag.CloseWait] < len(h4.Conns)+len(h6.Conns) || snap.States[sockdiag.Listen] < 2 {
		t.Errorf("state counts %v miss the holders' sockets", snap.States)
	}
}

func TestTakeSharedSocketsHaveBothOwners(t *testing.T) {
	skipUnlessRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2, Share: true})
	for _, complete := range []bool{false, true} {
		snap, err := snapshot.Take(snapshot.Options{CompleteScan: complete})
		if err != nil {
			t.Fatal(err)
		}
		got := mine(snap, h)
		if len(got) != 4 {
			t.Fatalf("complete=%v: %d of the holder's 4 sockets", complete, len(got))
		}
		for _, s := range got {
			var pids []int
			for _, o := range s.Owners {
				pids = append(pids, o.PID)
			}
			want := []int{h.PID, h.SharerPID}
			if h.SharerPID < h.PID {
				want = []int{h.SharerPID, h.PID}
			}
			if diff := cmp.Diff(want, pids); diff != "" {
				t.Errorf("complete=%v socket %v owners (-want +got):\n%s", complete, s.Remote, diff)
			}
		}
	}
}

func TestTakeReusesPreviousOwners(t *testing.T) {
	skipUnlessRoot(t)
	h := cwtest.Start(t, cwtest.Spec{Unread: 3})
	first, err := snapshot.Take(snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: first})
	if err != nil {
		t.Fatal(err)
	}
	if second.Stats.Reused < 3 {
		t.Errorf("reused %d owners, want at least the holder's 3", second.Stats.Reused)
	}
	for _, s := range mine(second, h) {
		if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
			t.Errorf("reused owners of %v: %v", s.Remote, s.Owners)
		}
	}
	// A reused owner that no longer holds the socket must not be kept.
	h.Stop()
	third, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: second})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mine(third, h)); n != 0 {
		t.Errorf("%d sockets of a stopped holder still listed", n)
	}
}

func TestTakeProcNetFallback(t *testing.T) {
	skipUnlessRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1, Unread: 1})
	snap, err := snapshot.Take(snapshot.Options{ForceProcNet: true})
	if err != nil {
		t.Fatal(err)
	}
	got := mine(snap, h)
	if snap.Stats.Source != "procnet" || len(got) != 2 {
		t.Fatalf("source %s, %d of 2 holder sockets", snap.Stats.Source, len(got))
	}
	for _, s := range got {
		if len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
			t.Errorf("owners %v, want holder %d", s.Owners, h.PID)
		}
		if _, ok := s.Age(); ok {
			t.Error("an age without tcp_info")
		}
	}
}

func TestTakeStatesAll(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	snap, err := snapshot.Take(snapshot.Options{States: sockdiag.AllStates, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	var listen, cw bool
	for _, s := range snap.Sockets {
		if s.Local == h.Listen && s.State == sockdiag.Listen {
			listen = true
		}
		if s.Local.Port() == h.Listen.Port() && s.State == sockdiag.CloseWait {
			cw = true
		}
	}
	if !listen || !cw {
		t.Errorf("all-states snapshot: holder listener %v, its CLOSE_WAIT %v", listen, cw)
	}
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	cwtest.NeedRoot(t, "reads other processes' /proc/PID/fd (or CAP_SYS_PTRACE+CAP_DAC_READ_SEARCH)")
}
