package ebpfstates_test

import (
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/ebpfstates"
	"github.com/closewait/closewait/internal/sockdiag"
)

// BenchmarkCount is one in-kernel pass over the host's TCP sockets (run
// it beside bench/cwhost); compare with BenchmarkDumpCount*.
func BenchmarkCount(b *testing.B) {
	cwtest.NeedRoot(b, "loads a BPF tcp iterator")
	c, err := ebpfstates.Load()
	cwtest.SkipIfNotSupported(b, err, ebpfstates.ErrNotSupported)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var n sockdiag.StateCounts
	for b.Loop() {
		if n, err = c.Count(); err != nil {
			b.Fatal(err)
		}
	}
	total := 0
	for _, v := range n {
		total += v
	}
	b.ReportMetric(float64(total), "sockets")
}

// BenchmarkDumpCountAll counts every state with a sock_diag dump (both
// families), the way a snapshot counted before the iterator.
func BenchmarkDumpCountAll(b *testing.B) { benchDump(b, sockdiag.AllStates) }

// BenchmarkDumpCountRest counts every state but CLOSE_WAIT and LISTEN with
// a sock_diag dump: the kernel walks every socket but sends only those.
func BenchmarkDumpCountRest(b *testing.B) {
	benchDump(b, sockdiag.AllStates&^sockdiag.NewStateSet(sockdiag.CloseWait, sockdiag.Listen))
}

func benchDump(b *testing.B, states sockdiag.StateSet) {
	c, err := sockdiag.Dial()
	if err != nil {
		b.Skip(err)
	}
	defer c.Close()
	total := 0
	for b.Loop() {
		total = 0
		if err := c.Dump(sockdiag.Request{States: states}, func(*sockdiag.Socket) bool { total++; return true }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total), "sockets")
}
