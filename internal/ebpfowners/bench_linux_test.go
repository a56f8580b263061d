package ebpfowners

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const envHold = "EBPFOWNERS_BENCH_HOLD"

// perHolder is how many socket fds one helper process holds, below the
// usual 20,000 RLIMIT_NOFILE hard limit (raising it needs CAP_SYS_RESOURCE).
const perHolder = 18_000

// holdSockets is the helper process: it opens n/2 socketpairs (or, for a
// negative n, -n dups of stdin), says READY and holds them until its stdin
// closes.
func holdSockets(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if n < 0 {
		// -n: n fds that are not sockets (dups of one), objects the
		// iterator visits and skips.
		for i := 0; i < -n; i++ {
			if _, err := unix.Dup(0); err != nil {
				fmt.Fprintf(os.Stderr, "dup %d: %v\n", i, err)
				return 1
			}
		}
	}
	for i := 0; i < n/2; i++ {
		if _, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0); err != nil {
			fmt.Fprintf(os.Stderr, "socketpair %d: %v\n", i, err)
			return 1
		}
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// extraSockets starts helper processes holding n more socket fds in total,
// so that the benchmarks also run at a scale beyond the host's own.
func extraSockets(b testing.TB, n int) { extraFDs(b, n, true) }

// extraFDs starts helper processes holding n more fds in total, sockets or
// not.
func extraFDs(b testing.TB, n int, sockets bool) {
	b.Helper()
	for n > 0 {
		k := min(n, perHolder)
		n -= k
		arg := k
		if !sockets {
			arg = -k
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), envHold+"="+strconv.Itoa(arg))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			stdin.Close()
			cmd.Process.Kill()
			cmd.Wait()
		})
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "READY\n" {
			b.Fatalf("helper %d holding %d fds: %q", cmd.Process.Pid, k, line)
		}
	}
}

// procWalk is the /proc baseline: readlink of every /proc/PID/fd/N, socket
// links parsed, like the /proc owner scan without its early stop.
func procWalk(fn func(pid, fd int, ino uint64)) error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd/"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			link, err := os.Readlink(dir + e.Name())
			if err != nil {
				continue
			}
			s, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			ino, _ := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
			fd, _ := strconv.Atoi(e.Name())
			fn(pid, fd, ino)
		}
	}
	return nil
}

// BenchmarkEach measures one iterator pass over the whole host (at its
// current fd count, then with extra socket fds held by helper processes, see
// benchScales), next to the /proc readlink walk. The sockets/op metric is how many records a pass
// yields.
func BenchmarkEach(b *testing.B) {
	it := loadOrSkip(b, loadOptions{noFilter: true})
	opened := 0
	for _, fds := range benchScales(b) {
		name := "host"
		if fds > 0 {
			extraSockets(b, fds-opened)
			opened = fds
			name = fmt.Sprintf("host+%dk", fds/1000)
		}
		b.Run("ebpf/"+name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			defer reportCPU(b)()
			for b.Loop() {
				if err := it.Each(func(int, int, uint64) { n++ }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/float64(b.N), "sockets/op")
		})
		b.Run("proc/"+name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			defer reportCPU(b)()
			for b.Loop() {
				if err := procWalk(func(int, int, uint64) { n++ }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/float64(b.N), "sockets/op")
		})
	}
}

// BenchmarkEachWanted measures a pass with the in-kernel filter against Each
// at the largest scale: wanted is 1% of the sockets (the map already holds
// them after the first pass), so the difference is emission and decoding.
func BenchmarkEachWanted(b *testing.B) {
	it := loadOrSkip(b, loadOptions{})
	if it.filterErr != nil {
		b.Fatal(it.filterErr)
	}
	scales := benchScales(b)
	extraSockets(b, scales[len(scales)-1])
	all := map[uint64]struct{}{}
	wanted := map[uint64]struct{}{}
	if err := it.Each(func(_, _ int, ino uint64) {
		all[ino] = struct{}{}
		if len(all)%100 == 0 {
			wanted[ino] = struct{}{}
		}
	}); err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("host+%dk", scales[len(scales)-1]/1000)
	b.Run("each/"+name, func(b *testing.B) {
		n := 0
		defer reportCPU(b)()
		for b.Loop() {
			if err := it.Each(func(int, int, uint64) { n++ }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/float64(b.N), "sockets/op")
	})
	b.Run("wanted-1%/"+name, func(b *testing.B) {
		n := 0
		defer reportCPU(b)()
		for b.Loop() {
			if err := it.EachWanted(wanted, func(int, int, uint64) { n++ }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/float64(b.N), "sockets/op")
	})
	b.Run("wanted-all/"+name, func(b *testing.B) {
		n := 0
		defer reportCPU(b)()
		for b.Loop() {
			if err := it.EachWanted(all, func(int, int, uint64) { n++ }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/float64(b.N), "sockets/op")
	})
}

// reportCPU starts measuring the process's CPU time (user+system); the
// returned func reports it per op as cpu-ns/op, a figure that, unlike
// ns/op, does not grow when other processes compete for the CPUs (the
// iterator yields between objects).
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchScales are the extra socket fds the benchmarks run at: by default
// none, 20k and 100k; EBPFOWNERS_BENCH_FDS=20000,300000 chooses others.
func benchScales(b *testing.B) []int {
	scales := []int{0, 20_000, 100_000}
	if v := os.Getenv("EBPFOWNERS_BENCH_FDS"); v != "" {
		scales = []int{0}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("EBPFOWNERS_BENCH_FDS: %v", err)
			}
			scales = append(scales, n)
		}
	}
	return scales
}

// BenchmarkLoad measures Load: kernel BTF parsing, two program
// verifications, attaching.
func BenchmarkLoad(b *testing.B) {
	loadOrSkip(b, loadOptions{})
	for b.Loop() {
		it, err := Load()
		if err != nil {
			b.Fatal(err)
		}
		it.Close()
	}
}
