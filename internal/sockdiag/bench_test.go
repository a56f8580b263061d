package sockdiag_test

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

// TestDumpAllocations guards the zero-allocation parse: a dump of the
// holder's sockets plus whatever the host has must not allocate per socket.
func TestDumpAllocations(t *testing.T) {
	cwtest.Start(t, cwtest.Spec{Unread: 50})
	c, err := sockdiag.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	count := func(*sockdiag.Socket) bool { n++; return true }
	req := sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Info: true}
	allocs := testing.AllocsPerRun(20, func() {
		n = 0
		if err := c.Dump(req, count); err != nil {
			t.Fatal(err)
		}
	})
	if n < 50 {
		t.Fatalf("dump saw %d sockets, want at least the holder's 50", n)
	}
	// A few allocations per dump (the request's sockaddr) are fine; one per socket is not.
	if allocs > 10 {
		t.Errorf("%.0f allocations per dump of %d sockets", allocs, n)
	}
}

// BenchmarkDumpCloseWait measures a state-filtered dump with tcp_info of
// 2,000 CLOSE_WAIT sockets held by a child process.
func BenchmarkDumpCloseWait(b *testing.B) {
	cwtest.Start(b, cwtest.Spec{Unread: 1000, ReadEOF: 1000})
	c, err := sockdiag.Dial()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait), Info: true}
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n = 0
		if err := c.Dump(req, func(*sockdiag.Socket) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(n, 1)), "ns/socket")
}
