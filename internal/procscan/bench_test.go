package procscan

import (
	"os"
	"testing"
)

// BenchmarkFindOwnersAll reads every fd table of this host looking for an
// inode nobody holds: the worst case of the owner scan.
func BenchmarkFindOwnersAll(b *testing.B) {
	fs := NewFS("/proc")
	wanted := map[uint64]struct{}{1<<63 - 1: {}}
	var fds int
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		res, err := fs.FindOwners(wanted, ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		fds = res.FDs
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(fds, 1)), "ns/fd")
}

// BenchmarkProcess reads the facts of this process.
func BenchmarkProcess(b *testing.B) {
	fs := NewFS("/proc")
	for i := 0; i < b.N; i++ {
		if _, err := fs.Process(os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}
