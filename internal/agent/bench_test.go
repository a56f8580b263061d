package agent_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/ebpfowners"
	"github.com/closewait/closewait/internal/sockevents"
)

// BenchmarkScan measures one incremental agent scan (snapshot reusing the
// previous owners, diagnosis, history record) on the host as it is, plus a
// holder of 200 CLOSE_WAIT sockets. Run it beside bench/cwhost for the
// 100k-socket figure:
//
//	go run ./bench/cwhost -closewait 100000 &   # wait for READY
//	go test ./internal/agent -run '^$' -bench Scan -benchtime 20x
func BenchmarkScan(b *testing.B) {
	cwtest.Start(b, cwtest.Spec{Unread: 100, ReadEOF: 100})
	feed, err := sockevents.Open()
	if err != nil {
		b.Logf("no change feed (%v): the feed case is skipped", err)
	} else {
		defer feed.Close()
	}
	iter, err := ebpfowners.Load()
	if err != nil {
		b.Logf("no eBPF owner iterator (%v): the cycle cases walk /proc", err)
	} else {
		defer iter.Close()
	}
	for _, bc := range []struct {
		name  string
		every int
		feed  bool
	}{
		{"incremental", 1 << 30, false},     // owners trusted while their process lives
		{"incremental-feed", 1 << 30, true}, // and CLOSE_WAIT sockets followed by the eBPF change feed
		{"verified", 1, false},              // every owner's fd re-read, unowned sockets searched again
		// What `closewait agent` does: a full check every DefaultFullCheckEvery
		// scans, eBPF owners; run a multiple of 8 scans (-benchtime 40x).
		{"cycle", 0, false},
		{"cycle-feed", 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opt := agent.Options{Thresholds: diagnose.DefaultThresholds, FullCheckEvery: bc.every}
			if bc.feed {
				if feed == nil {
					b.Skip("no change feed")
				}
				opt.Changes = feed
			}
			if bc.every == 0 && iter != nil {
				opt.OwnerSource = iter
			}
			opt.ReleaseMemory = bc.every == 0 // as `closewait agent` does
			a, err := agent.New(opt)
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Scan(); err != nil { // the first, full owner scan
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := a.Scan(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			st := a.Latest()
			b.ReportMetric(float64(st.Report.CloseWait), "closewait_sockets")
			b.ReportMetric(float64(st.Report.Snapshot.Stats.DumpTime.Microseconds())/1e3, "dump_ms/last")
			b.ReportMetric(float64(st.Report.Snapshot.Stats.ScanTime.Microseconds())/1e3, "owners_ms/last")
			if bc.feed && bc.every != 0 && st.Report.Snapshot.Stats.Changes != "applied" {
				b.Fatalf("feed case: Stats.Changes = %q, want applied", st.Report.Snapshot.Stats.Changes)
			}
		})
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
