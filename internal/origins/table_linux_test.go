package origins

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockorigin"
)

// TestTableAcceptsFollowInbound: the agent's table keeps the recorder's
// accept hook attached while a traced process holds an accepted CLOSE_WAIT
// socket and for acceptsLinger Updates after, detached otherwise; the
// report says which. The traced process is this test's own.
func TestTableAcceptsFollowInbound(t *testing.T) {
	cwtest.NeedRoot(t, "loads the eBPF socket-origin recorder")
	rec, err := sockorigin.Open()
	if errors.Is(err, sockorigin.ErrNotSupported) && !cwtest.EBPFExpected() {
		t.Skipf("eBPF socket-origin recorder not available here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	tab := NewTable(rec, "", 0)
	defer tab.Close()

	pid := os.Getpid()
	local := netip.MustParseAddrPort("127.0.0.1:8080")
	snap := func(inbound bool) *snapshot.Snapshot {
		s := snapshot.Socket{Socket: sockdiag.Socket{State: sockdiag.CloseWait, Local: local,
			Remote: netip.MustParseAddrPort("127.0.0.1:40000")}, Owners: []procscan.Owner{{PID: pid, FD: 3}}}
		if inbound && !s.SetListener(local) {
			t.Fatal("SetListener refused the socket's own address")
		}
		return &snapshot.Snapshot{Sockets: []snapshot.Socket{s},
			Processes: map[int]*procscan.Process{pid: {PID: pid, Comm: "origins.test"}}}
	}
	update := func(inbound bool) bool {
		t.Helper()
		if err := tab.Update(snap(inbound)); err != nil {
			t.Fatal(err)
		}
		rep, err := tab.Report()
		if err != nil || rep == nil {
			t.Fatalf("report %v, err %v", rep, err)
		}
		if rep.AcceptsTraced != rec.Accepts() {
			t.Fatalf("report says accepts traced %v, the recorder %v", rep.AcceptsTraced, rec.Accepts())
		}
		return rec.Accepts()
	}
	for i := 1; i <= acceptsLinger; i++ {
		if !update(false) {
			t.Fatalf("outbound only: the accept hook detached after %d Updates, want it for %d", i, acceptsLinger)
		}
	}
	if update(false) {
		t.Fatalf("outbound only: the accept hook still attached after %d Updates", acceptsLinger+1)
	}
	if !update(true) {
		t.Fatal("an accepted CLOSE_WAIT socket: the accept hook not attached")
	}
	for i := 1; i <= acceptsLinger; i++ {
		if !update(false) {
			t.Fatalf("the accept hook detached %d Updates after the last accepted CLOSE_WAIT socket, want %d", i, acceptsLinger)
		}
	}
	if update(false) {
		t.Fatal("the accept hook still attached after the linger")
	}
}
