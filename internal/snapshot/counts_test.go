package snapshot

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

// TestListedOnly takes the same quiet namespace (a holder's CLOSE_WAIT
// sockets and the test's FIN_WAIT2 ends) with and without counting the
// states that are not listed.
func TestListedOnly(t *testing.T) {
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	only := map[uint64]bool{ino: true}
	cwtest.Start(t, cwtest.Spec{NetNS: name, ReadEOF: 2, Unread: 3})

	counted, err := Take(Options{NetNS: only, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	listed, err := Take(Options{NetNS: only, NoOwners: true, ListedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if counted.States[sockdiag.CloseWait] != 5 || counted.States[sockdiag.FinWait2] != 5 || counted.States[sockdiag.Listen] != 1 {
		t.Errorf("counted: %v, want 5 CLOSE_WAIT, 5 FIN_WAIT2, 1 LISTEN", counted.States)
	}
	if listed.States[sockdiag.FinWait2] != 0 || listed.States[sockdiag.CloseWait] != 5 || listed.States[sockdiag.Listen] != 1 || len(listed.Sockets) != 5 {
		t.Errorf("ListedOnly: states %v, %d sockets; want only the 5 CLOSE_WAIT and the listener counted", listed.States, len(listed.Sockets))
	}
}
