package diagnose

import (
	"net/netip"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
)

// benchSnapshot is the snapshot of the benchmarks: 100,000 CLOSE_WAIT
// sockets held by one process, 60,000 read to EOF on a listening port,
// 40,000 pooled to 50 remotes, and the baseline of a snapshot 10 s older
// (built once, as watch does for a whole window).
func benchSnapshot() (*snapshot.Snapshot, *Baseline) {
	var socks [][]snapshot.Socket
	socks = append(socks, many(60000, sockSpec{inbound: true, age: time.Hour}))
	for i := 0; i < 50; i++ {
		r := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 3, byte(i)}), 5432)
		socks = append(socks, many(800, sockSpec{remote: r, recvQ: 1, age: time.Hour, idle: 600 * time.Second}))
	}
	snap := snapOf("/usr/bin/java", socks...)
	prev := snapOf("/usr/bin/java", socks[0][:50000])
	prev.Time = snap.Time.Add(-10 * time.Second)
	return snap, NewBaseline(prev)
}

// BenchmarkAnalyze judges a snapshot of 100,000 CLOSE_WAIT sockets held by
// one process: 60,000 read to EOF on a listening port, 40,000 pooled to 50
// remotes, compared with a previous snapshot (growth). Run with -benchtime 20x.
func BenchmarkAnalyze(b *testing.B) {
	snap, base := benchSnapshot()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := Analyze(snap, DefaultThresholds, Options{Previous: base})
		if len(r.Processes[0].Findings) != 1+MaxGroups+1 { // growing, missing-close, and MaxGroups pool-idle (the last one merges 45 remotes)
			b.Fatalf("%d findings", len(r.Processes[0].Findings))
		}
	}
}

// BenchmarkAnalyzer judges the snapshot of BenchmarkAnalyze again and
// again with one Analyzer, as watch does: "unchanged" alternates it with a
// copy taken a second later (every age one second older), "changed-100"
// with a copy in which 100 sockets, spread over the groups, closed and 100
// others took their places. Run with -benchtime 20x.
func BenchmarkAnalyzer(b *testing.B) {
	snap, base := benchSnapshot()

	later := cloneSnap(snap)
	advance(later, time.Second)
	changed := cloneSnap(snap)
	for i := 0; i < 100; i++ {
		at := i * len(changed.Sockets) / 100
		old := &changed.Sockets[at]
		sp := sockSpec{inbound: old.Inbound(), remote: old.Remote, recvQ: old.RecvQ, age: time.Second, idle: 600 * time.Second}
		changed.Sockets[at] = mk(sp)
	}
	for _, bc := range []struct {
		name string
		alt  *snapshot.Snapshot
	}{{"unchanged", later}, {"changed-100", changed}} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAnalyzer()
			a.Analyze(snap, DefaultThresholds, Options{Previous: base})
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				s := snap
				if i++; i%2 == 1 {
					s = bc.alt
				}
				r := a.Analyze(s, DefaultThresholds, Options{Previous: base})
				if len(r.Processes[0].Findings) != 1+MaxGroups+1 {
					b.Fatalf("%d findings", len(r.Processes[0].Findings))
				}
			}
		})
	}
}

// BenchmarkAnalyzerProcesses judges, again and again, a snapshot of 500
// processes holding 20 CLOSE_WAIT sockets each (10 read to EOF on a
// listening port, 10 pooled to one of 7 remotes), a copy taken a second
// later in between: the cost per process of a host where nothing changes.
func BenchmarkAnalyzerProcesses(b *testing.B) {
	var socks [][]snapshot.Socket
	for p := range 500 {
		r := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 3, byte(p % 7)}), 5432)
		ss := append(many(10, sockSpec{inbound: true, age: time.Hour}), many(10, sockSpec{remote: r, recvQ: 1, age: time.Hour, idle: 600 * time.Second})...)
		for i := range ss {
			ss[i].Owners = []procscan.Owner{{PID: 1000 + p, FD: 10 + i}}
		}
		socks = append(socks, ss)
	}
	snap := snapOf("/usr/bin/java", socks...)
	for p := range 500 {
		snap.Processes[1000+p] = &procscan.Process{PID: 1000 + p, Exe: "/usr/bin/java", Cmdline: "java -jar app.jar", User: "svc", OpenFDs: 100, FDSoft: 1024}
	}
	later := cloneSnap(snap)
	advance(later, time.Second)
	a := NewAnalyzer()
	a.Analyze(snap, DefaultThresholds, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		s := snap
		if i++; i%2 == 1 {
			s = later
		}
		if r := a.Analyze(s, DefaultThresholds, Options{}); len(r.Processes) != 500 {
			b.Fatalf("%d processes", len(r.Processes))
		}
	}
}
