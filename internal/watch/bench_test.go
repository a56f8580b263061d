package watch

import (
	"encoding/json"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/snapshot"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newLiveSampler(verifyEvery int) *Sampler {
	return NewSampler(Options{
		Thresholds:  diagnose.DefaultThresholds,
		VerifyEvery: verifyEvery,
		Take: func(prev *snapshot.Snapshot, verify bool) (*snapshot.Snapshot, error) {
			return snapshot.Take(snapshot.Options{Previous: prev, ReuseByProcess: !verify, SkipUnowned: !verify, CarryInfo: !verify})
		},
	})
}

// BenchmarkTick is the cost of one watch interval on this host: an
// incremental snapshot (owners reused from the previous tick), the
// judgement with growth over the window, and the NDJSON line. Run it on a
// busy host (bench/cwhost) for the figure that matters; the holder started
// here guarantees some CLOSE_WAIT sockets. It reports the host's CLOSE_WAIT
// count as "sockets".
func BenchmarkTick(b *testing.B) {
	for _, bc := range []struct {
		name        string
		verifyEvery int
	}{{"incremental", 60}, {"verify-each-tick", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			cwtest.Start(b, cwtest.Spec{ReadEOF: 20, Unread: 20})
			s := newLiveSampler(bc.verifyEvery)
			t, err := s.Next() // the first tick scans /proc
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				if t, err = s.Next(); err != nil {
					b.Fatal(err)
				}
				j, _ := json.Marshal(BuildJSONTick(t, 0))
				io.Discard.Write(j)
			}
			// CPU time (user + system) per tick, which a loaded host does not inflate as it does wall time.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(t.Report.CloseWait), "sockets")
		})
	}
}
