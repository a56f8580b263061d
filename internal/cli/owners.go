package cli

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/ebpfowners"
	"github.com/closewait/closewait/internal/procscan"
)

// autoEBPFMinFDs is the number of open files on the host above which --owners
// auto loads the eBPF iterator for a one-shot command. Loading costs about
// 40-100 ms (kernel BTF, two verifier runs); the /proc walk costs about 5 µs
// per fd on two cores, so below this it is cheaper to walk.
const autoEBPFMinFDs = 20000

// ownerState caches the eBPF iterator for the life of the command.
type ownerState struct {
	tried bool
	iter  *ebpfowners.Iterator
}

// OwnerSource returns the one-pass owner source --owners asks for, or nil
// for the /proc walk. Long-running commands (watch, agent) pass longRunning:
// the load cost is paid once, so auto always prefers eBPF there. Any load
// error falls back to the walk: silently (one line with -v) under auto, with
// a note on stderr under --owners ebpf.
func (g *Globals) OwnerSource(longRunning bool) procscan.SocketFDSource {
	if g.Owners == "proc" {
		return nil
	}
	if g.owners.tried {
		if g.owners.iter == nil {
			return nil
		}
		return g.owners.iter
	}
	g.owners.tried = true
	explicit := g.Owners == "ebpf"
	why := ""
	switch {
	case procscan.NewFS(g.ProcRoot).Root() != procscan.DefaultRoot:
		why = "--path.procfs is not /proc"
	case !ebpfowners.InInitPIDNS():
		why = "not in the host's pid namespace (the iterator reports host pids)"
	case !explicit && !longRunning && hostOpenFiles() < autoEBPFMinFDs:
		if g.Verbose {
			fmt.Fprintf(g.stderr, "closewait: owners: /proc walk (fewer than %d open files on the host: cheaper than loading eBPF)\n", autoEBPFMinFDs)
		}
		return nil
	}
	if why == "" {
		it, err := ebpfowners.Load()
		if err == nil {
			g.owners.iter = it
			if g.Verbose {
				fmt.Fprintln(g.stderr, "closewait: owners: eBPF task_file iterator")
			}
			return it
		}
		why = oneLine(err)
	}
	if explicit {
		fmt.Fprintf(g.stderr, "closewait: note: --owners ebpf unavailable (%s): reading /proc instead\n", why)
	} else if g.Verbose {
		fmt.Fprintf(g.stderr, "closewait: owners: /proc walk (eBPF unavailable: %s)\n", why)
	}
	return nil
}

// longRunningGC trades memory for CPU in commands that snapshot on every
// tick (watch, agent): at 100k sockets each tick allocates ~50 MB of short-lived
// maps and slices, and collecting at twice the live heap instead of at
// once saves about 8% of a tick's CPU. GOGC in the environment still wins.
func longRunningGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}

func (g *Globals) closeOwners() {
	if g.owners.iter != nil {
		g.owners.iter.Close()
		g.owners.iter = nil
	}
}

// hostOpenFiles reads the number of allocated file handles from
// /proc/sys/fs/file-nr, or 0.
func hostOpenFiles() int {
	b, err := os.ReadFile("/proc/sys/fs/file-nr")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
