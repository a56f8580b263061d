package history

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRecord records a host of 100k CLOSE_WAIT sockets in 50
// processes, 100 sockets entering and leaving per record (one fsynced
// transaction each): the cost of `watch --history` or the agent per tick.
func BenchmarkRecord(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "h.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var procs []proc
	for p := range 50 {
		procs = append(procs, proc{pid: 1000 + p, cw: 2000, fds: 2100, start: 1})
	}
	inodes := make([]uint64, 100_000)
	t0 := time.Unix(1_800_000_000, 0)
	i := 0
	record := func() {
		for j := range inodes {
			inodes[j] = uint64(i*100 + j)
		}
		if err := s.Record(makeReport(t0.Add(time.Duration(i)*time.Second), procs, inodes)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	record() // the first record writes every socket
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		record()
	}
	b.StopTimer()
	in, _ := s.Info()
	b.ReportMetric(float64(in.FileBytes)/(1<<20), "file-MiB")
}
