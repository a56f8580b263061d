package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

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
	iter  *ebpfowners.Iterator // long-running commands: loaded up front
	lazy  *lazyIterator        // one-shot commands: loaded during the first pass
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
		switch {
		case g.owners.lazy != nil:
			return g.owners.lazy
		case g.owners.iter != nil:
			return g.owners.iter
		}
		return nil
	}
	g.owners.tried = true
	explicit := g.Owners == "ebpf"
	why := ""
	switch {
	case procscan.NewFS(g.ProcRoot).Root() != procscan.DefaultRoot:
		why = "--path.procfs is not /proc"
	case !ebpfowners.InInitPIDNS():
		why = "not in the host's pid namespace (the iterator reports host pids)"
	case !explicit && !longRunning && hostOpenFiles(g.ProcRoot) < autoEBPFMinFDs:
		if g.Verbose {
			fmt.Fprintf(g.stderr, "closewait: owners: /proc walk (fewer than %d open files on the host: cheaper than loading eBPF)\n", autoEBPFMinFDs)
		}
		return nil
	}
	if why == "" && !longRunning {
		// One-shot: load inside the owner pass, which runs beside the
		// kernel's socket dump (snapshot prefetch), so the 40-100 ms of
		// loading overlaps the dump instead of preceding it. A load error
		// comes back as the scan's fallback reason; take() reports it.
		g.owners.lazy = &lazyIterator{g: g}
		return g.owners.lazy
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
	g.noteOwnersFallback(why)
	return nil
}

// noteOwnersFallback says why eBPF owners are not used: on stderr under
// --owners ebpf, with -v under auto, silently otherwise.
func (g *Globals) noteOwnersFallback(why string) {
	g.noteEBPFFallback("owners", g.Owners, "/proc walk", "reading /proc instead", why)
}

// noteEBPFFallback says why the eBPF choice of --flag is not used, once: a
// note on stderr when the user asked for ebpf, one -v line under auto.
// short names what is used instead in the -v line, instead in the note.
func (g *Globals) noteEBPFFallback(flag, mode, short, instead, why string) {
	if mode == "ebpf" {
		fmt.Fprintf(g.stderr, "closewait: note: --%s ebpf unavailable (%s): %s\n", flag, why, instead)
	} else if g.Verbose {
		fmt.Fprintf(g.stderr, "closewait: %s: %s (eBPF unavailable: %s)\n", flag, short, why)
	}
}

// lazyIterator loads the eBPF iterator on first use, from whichever
// goroutine first needs it.
type lazyIterator struct {
	g    *Globals
	once sync.Once
	it   *ebpfowners.Iterator
	err  error
}

func (l *lazyIterator) load() error {
	l.once.Do(func() { l.it, l.err = ebpfowners.Load() })
	return l.err
}

// Each lists every socket fd of every process (procscan.SocketFDLister).
func (l *lazyIterator) Each(fn func(pid, fd int, inode uint64)) error {
	if err := l.load(); err != nil {
		return err
	}
	return l.it.Each(fn)
}

// EachWanted lists the socket fds of the wanted inodes (procscan.SocketFDSource).
func (l *lazyIterator) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	if err := l.load(); err != nil {
		return err
	}
	return l.it.EachWanted(wanted, fn)
}

func (g *Globals) closeOwners() {
	if g.owners.iter != nil {
		g.owners.iter.Close()
		g.owners.iter = nil
	}
	if l := g.owners.lazy; l != nil && l.it != nil {
		l.it.Close()
		l.it = nil
	}
}

// hostOpenFiles reads the number of allocated file handles from
// sys/fs/file-nr under the procfs mount procRoot (--path.procfs), or 0.
func hostOpenFiles(procRoot string) int {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys", "fs", "file-nr"))
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

// longRunningGC trades memory for CPU in commands that snapshot on every
// tick (watch, agent): at 100k sockets each tick allocates ~50 MB of short-lived
// maps and slices, and collecting at twice the live heap instead of at
// once saves about 8% of a tick's CPU. GOGC in the environment still wins.
func longRunningGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}
