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

// BenchmarkSyscall measures what the accept hook (a program on every
// system call's exit) costs a process that is not traced: getppid(2) with
// and without the recorder attached. The difference is the tracepoint's
// slow path plus the program's early exit.
//
//	go test ./internal/sockorigin -run '^$' -bench Syscall
func BenchmarkSyscall(b *testing.B) {
	for _, attached := range []bool{false, true} {
		name := "detached"
		if attached {
			name = "attached"
		}
		b.Run(name, func(b *testing.B) {
			if attached {
				openOrSkip(b)
			}
			for b.Loop() {
				syscall.Getppid()
			}
		})
	}
}
