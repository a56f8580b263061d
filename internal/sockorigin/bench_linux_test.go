package sockorigin

import (
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// floor attaches a program that only returns 0 to the same tracepoint: its
// ns/run is what the kernel's BPF statistics and the tracepoint's call cost
// by themselves (sched_clock twice per run dominates on virtual machines),
// to be subtracted from the recorder's programs' ns/run.
func floor(b *testing.B, tp string) *ebpf.Program {
	b.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "cw_floor", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp,
		License: License, Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		p.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(); p.Close() })
	return p
}

// progCost accumulates the kernel BPF statistics of the recorder's
// programs over a benchmark.
type progCost struct {
	r      *Recorder
	progs  map[string]*ebpf.Program
	before map[string]*ebpf.ProgramStats
}

func startCost(b *testing.B, r *Recorder) *progCost {
	b.Helper()
	c := &progCost{r: r, before: map[string]*ebpf.ProgramStats{}, progs: map[string]*ebpf.Program{
		StateProgram: r.Program(StateProgram), AcceptProgram: r.Program(AcceptProgram),
		"floor-state": floor(b, "inet_sock_set_state"), "floor-accept": floor(b, "sys_exit"),
	}}
	for name, p := range c.progs {
		st, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		c.before[name] = st
	}
	return c
}

// report adds, per program, ns/run and runs/op, and the programs' total
// kernel time per op.
func (c *progCost) report(b *testing.B, short map[string]string) {
	b.Helper()
	var total uint64
	for name, before := range c.before {
		after, err := c.progs[name].Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs := after.RunCount - before.RunCount
		ns := uint64(after.Runtime - before.Runtime)
		if short[name] == "" { // a floor
			if runs > 0 {
				b.ReportMetric(float64(ns)/float64(runs), name+"-ns/run")
			}
			continue
		}
		total += ns
		if runs > 0 {
			b.ReportMetric(float64(ns)/float64(runs), short[name]+"-ns/run")
		}
		b.ReportMetric(float64(runs)/float64(b.N), short[name]+"-runs/op")
	}
	b.ReportMetric(float64(total)/float64(b.N), "prog-ns/op")
}

var shortNames = map[string]string{StateProgram: "state", AcceptProgram: "accept"}

// BenchmarkCreation measures what the recorder costs per socket, from the
// kernel's BPF statistics: each op dials a loopback listener and accepts
// (two sockets: one by connect, one by accept), then closes both ends
// (about ten TCP state changes, two of them to TCP_CLOSE). "traced" records
// this process; "untraced" does not (what every other process pays).
// prog-ns/op is the programs' kernel time per op: halved, the cost per
// traced creation (stack walk, map updates, and the close accounting
// included). The accept program also runs on every system call of the
// host: its ns/run is that per-syscall cost. floor-*-ns/run are empty
// programs on the same tracepoints: the measuring's own cost.
//
//	go test ./internal/sockorigin -run '^$' -bench Creation -benchtime 5000x
func BenchmarkCreation(b *testing.B) {
	for _, traced := range []bool{true, false} {
		name := "untraced"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) {
			r := openOrSkip(b)
			stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
			if err != nil {
				b.Skipf("kernel BPF statistics not available: %v", err)
			}
			defer stats.Close()
			if traced {
				if err := r.AddPID(os.Getpid()); err != nil {
					b.Fatal(err)
				}
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			cost := startCost(b, r)
			for b.Loop() {
				dialAcceptClose(b, ln)
			}
			b.StopTimer()
			cost.report(b, shortNames)
			if traced {
				smp, err := r.Sample()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(smp.Dropped), "dropped")
			}
		})
	}
}

// BenchmarkCreationAlternating measures the same as BenchmarkCreation
// with the process traced and untraced in alternate batches of 50 ops
// within one run, so that load from the rest of the host, which drifts
// over seconds, weighs on both alike. extra-ns/creation is the programs'
// kernel time per traced op beyond what its runs cost at the untraced
// ns/run, halved (an op makes two sockets): what a traced creation costs,
// its close included.
//
//	go test ./internal/sockorigin -run '^$' -bench CreationAlternating -benchtime 10000x
func BenchmarkCreationAlternating(b *testing.B) {
	r := openOrSkip(b)
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
	progs := map[string]*ebpf.Program{
		"state": r.Program(StateProgram), "accept": r.Program(AcceptProgram),
		"floor-state": floor(b, "inet_sock_set_state"), "floor-accept": floor(b, "sys_exit"),
	}
	type sum struct{ ns, runs, ops uint64 }
	var acc [2]map[string]*sum // [untraced, traced]
	for i := range acc {
		acc[i] = map[string]*sum{}
		for name := range progs {
			acc[i][name] = &sum{}
		}
	}
	read := func() map[string]ebpf.ProgramStats {
		m := map[string]ebpf.ProgramStats{}
		for name, p := range progs {
			st, err := p.Stats()
			if err != nil {
				b.Fatal(err)
			}
			m[name] = *st
		}
		return m
	}
	const batch = 50
	traced := false
	n := 0
	b.ResetTimer()
	for n < b.N {
		if err := map[bool]func(int) error{true: r.AddPID, false: r.RemovePID}[traced](os.Getpid()); err != nil {
			b.Fatal(err)
		}
		k := min(batch, b.N-n)
		before := read()
		for range k {
			dialAcceptClose(b, ln)
		}
		after := read()
		t := 0
		if traced {
			t = 1
		}
		for name := range progs {
			a := acc[t][name]
			a.ns += uint64(after[name].Runtime - before[name].Runtime)
			a.runs += after[name].RunCount - before[name].RunCount
			a.ops += uint64(k)
		}
		n += k
		traced = !traced
	}
	b.StopTimer()
	// The traced batches' kernel time beyond what their runs cost at the
	// untraced batches' ns/run: runs from other processes (every system
	// call on the host runs the accept program) are priced alike in both.
	var extra float64
	for _, name := range []string{"state", "accept"} {
		u, t := acc[0][name], acc[1][name]
		if u.runs == 0 || t.ops == 0 {
			continue
		}
		extra += (float64(t.ns) - float64(t.runs)*float64(u.ns)/float64(u.runs)) / float64(t.ops)
	}
	for t, label := range []string{"untraced", "traced"} {
		for name, a := range acc[t] {
			if a.runs > 0 {
				b.ReportMetric(float64(a.ns)/float64(a.runs), label+"-"+name+"-ns/run")
			}
		}
		b.ReportMetric(float64(acc[t]["state"].runs)/float64(acc[t]["state"].ops), label+"-state-runs/op")
	}
	b.ReportMetric(extra/2, "extra-ns/creation")
}

// BenchmarkSyscall measures what the accept hook (a program on every
// system call's exit) costs a process that is not traced: getppid(2)
// without any program, with an empty program on raw_syscalls:sys_exit
// (what any syscall tracepoint costs: every system call then takes the
// kernel's slow path), with the recorder attached, and with the recorder
// attached but its accept hook detached (SetAccepts(false), as the agent
// does while every leak it traces is outbound). No BPF statistics are on,
// so this is what the host pays.
//
//	go test ./internal/sockorigin -run '^$' -bench Syscall -count 5
func BenchmarkSyscall(b *testing.B) {
	for _, mode := range []string{"detached", "empty", "attached", "no-accepts"} {
		b.Run(mode, func(b *testing.B) {
			switch mode {
			case "empty":
				floor(b, "sys_exit")
			case "attached":
				openOrSkip(b)
			case "no-accepts":
				if err := openOrSkip(b).SetAccepts(false); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				syscall.Getppid()
			}
		})
	}
}

// dialAcceptClose makes one loopback pair on ln and closes both ends: two
// sockets, about ten state changes.
func dialAcceptClose(b *testing.B, ln net.Listener) {
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	c.Close()
	s.Close()
}
