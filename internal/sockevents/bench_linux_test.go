package sockevents

import (
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
)

// BenchmarkProgram measures what the feed costs the host: the kernel time
// of the tracepoint program per TCP state change (kernel BPF statistics),
// driven by loopback connections opened and closed by this process. Each
// connection makes about ten state changes over its two ends, two of them
// into and out of CLOSE_WAIT. Reported: prog-ns/run (every state change
// pays it), runs/op, and the Drain cost per event in Go.
//
//	go test ./internal/sockevents -run '^$' -bench Program -benchtime 2000x
func BenchmarkProgram(b *testing.B) {
	f, err := open(openOptions{})
	cwtest.SkipIfNotSupported(b, err, ErrNotSupported)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Skipf("kernel BPF statistics not available: %v", err)
	}
	defer stats.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	prog := f.coll.Programs["cw_state"]
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	events := 0
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		c.Close() // s enters CLOSE_WAIT
		buf := make([]byte, 1)
		s.Read(buf) // the EOF
		s.Close()   // s leaves it
		if _, err := f.Drain(func(*Event) { events++ }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	runs := after.RunCount - before.RunCount
	if runs > 0 {
		b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "prog-ns/run")
	}
	b.ReportMetric(float64(runs)/float64(b.N), "runs/op")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}
