package agent_test

import (
	"testing"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
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
	for _, bc := range []struct {
		name  string
		every int
	}{
		{"incremental", 1 << 30}, // owners trusted while their process lives
		{"verified", 1},          // every owner's fd re-read, unowned sockets searched again
	} {
		b.Run(bc.name, func(b *testing.B) {
			a, err := agent.New(agent.Options{Thresholds: diagnose.DefaultThresholds, FullCheckEvery: bc.every})
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Scan(); err != nil { // the first, full owner scan
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := a.Scan(); err != nil {
					b.Fatal(err)
				}
			}
			st := a.Latest()
			b.ReportMetric(float64(st.Report.CloseWait), "closewait_sockets")
			b.ReportMetric(float64(st.Report.Snapshot.Stats.DumpTime.Microseconds())/1e3, "dump_ms/last")
			b.ReportMetric(float64(st.Report.Snapshot.Stats.ScanTime.Microseconds())/1e3, "owners_ms/last")
		})
	}
}
