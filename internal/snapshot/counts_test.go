package snapshot

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/ebpfstates"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

// TestStateCounts takes the same quiet namespace (a holder's CLOSE_WAIT
// sockets and the test's FIN_WAIT2 ends) three ways: counting the other
// states with sock_diag, in the kernel (ebpfstates), and not at all
// (ListedOnly); the first two must agree state by state.
func TestStateCounts(t *testing.T) {
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	only := map[uint64]bool{ino: true}
	cwtest.Start(t, cwtest.Spec{NetNS: name, ReadEOF: 2, Unread: 3})
	counter, err := ebpfstates.Load()
	cwtest.SkipIfNotSupported(t, err, ebpfstates.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()

	dumped, err := Take(Options{NetNS: only, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	counted, err := Take(Options{NetNS: only, NoOwners: true, StateCounter: counter})
	if err != nil {
		t.Fatal(err)
	}
	listed, err := Take(Options{NetNS: only, NoOwners: true, StateCounter: counter, ListedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if dumped.States[sockdiag.CloseWait] != 5 || dumped.States[sockdiag.FinWait2] != 5 || dumped.States[sockdiag.Listen] != 1 {
		t.Fatalf("sock_diag counts %v, want 5 CLOSE_WAIT, 5 FIN_WAIT2, 1 LISTEN", dumped.States)
	}
	for _, st := range sockdiag.States() {
		if dumped.States[st] != counted.States[st] {
			t.Errorf("%v: %d counted in the kernel, %d by sock_diag", st, counted.States[st], dumped.States[st])
		}
	}
	if counted.Stats.Counted != "ebpf" || dumped.Stats.Counted != "netlink" {
		t.Errorf("Stats.Counted: %q with the counter, %q without; want ebpf and netlink", counted.Stats.Counted, dumped.Stats.Counted)
	}
	if listed.States[sockdiag.FinWait2] != 0 || listed.States[sockdiag.CloseWait] != 5 || len(listed.Sockets) != 5 {
		t.Errorf("ListedOnly: states %v, %d sockets; want only the 5 CLOSE_WAIT (and LISTEN) counted", listed.States, len(listed.Sockets))
	}
}
