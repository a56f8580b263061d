package watch

import (
	"encoding/json"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/ebpfowners"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockevents"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newLiveSampler(verifyEvery int) *history.Sampler {
	return newLiveSamplerFrom(verifyEvery, nil, nil)
}

// newLiveSamplerFrom takes snapshots as closewait watch does, finding the
// owners of new sockets through src (nil: the /proc walk) and following
// CLOSE_WAIT sockets through feed (nil: a full dump each tick).
func newLiveSamplerFrom(verifyEvery int, src procscan.SocketFDSource, feed snapshot.Changes) *history.Sampler {
	return history.NewSampler(history.SamplerOptions{
		Snapshot:       snapshot.Options{OwnerSource: src},
		Changes:        feed,
		Thresholds:     diagnose.DefaultThresholds,
		FullCheckEvery: verifyEvery,
	})
}

// BenchmarkTick is the cost of one watch interval on this host: an
// incremental snapshot (owners reused from the previous tick), the
// judgement with growth over the window, and the NDJSON line. Run it on a
// busy host (bench/cwhost) for the figure that matters; the holder started
// here guarantees some CLOSE_WAIT sockets. It reports the host's CLOSE_WAIT
// count as "sockets".
func BenchmarkTick(b *testing.B) {
	var ebpf procscan.SocketFDSource
	if it, err := ebpfowners.Load(); err == nil {
		defer it.Close()
		ebpf = it
	}
	var feed snapshot.Changes
	if f, err := sockevents.Open(); err == nil {
		defer f.Close()
		feed = f
	}
	for _, bc := range []struct {
		name        string
		verifyEvery int
		src         procscan.SocketFDSource
		feed        snapshot.Changes
	}{
		{"incremental", 60, nil, nil},
		{"incremental-ebpf", 60, ebpf, nil},
		{"incremental-ebpf-feed", 60, ebpf, feed}, // what closewait watch does where eBPF loads
		{"verify-each-tick", 1, nil, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if strings.Contains(bc.name, "ebpf") && (ebpf == nil || strings.HasSuffix(bc.name, "feed") && feed == nil) {
				b.Skip("the eBPF owner iterator or change feed does not load here (needs root, Linux ≥ 5.8 with BTF)")
			}
			cwtest.Start(b, cwtest.Spec{ReadEOF: 20, Unread: 20})
			s := newLiveSamplerFrom(bc.verifyEvery, bc.src, bc.feed)
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
