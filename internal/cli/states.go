package cli

import (
	"fmt"
	"sync"

	"github.com/closewait/closewait/internal/ebpfstates"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// stateCounterState caches the in-kernel state counter for the life of the
// command.
type stateCounterState struct {
	tried bool
	lazy  *lazyCounter
}

// StateCounter returns the in-kernel counter of the states a snapshot does
// not list (ebpfstates), or nil to count them with sock_diag. Like the eBPF
// owners under --owners auto, a one-shot command loads it only on a host
// with at least autoEBPFMinFDs open files, where a sock_diag count costs
// more than loading; long-running commands always try. It loads on first
// use, inside the counting pass that runs beside the socket dump. Any error
// falls back to sock_diag (snapshot.Stats.Counted says why; one line with -v).
func (g *Globals) StateCounter(longRunning bool) snapshot.StateCounter {
	if g.counter.tried {
		if g.counter.lazy == nil {
			return nil
		}
		return g.counter.lazy
	}
	g.counter.tried = true
	if procscan.NewFS(g.ProcRoot).Root() != procscan.DefaultRoot {
		return nil // another host's /proc: its sockets are not this kernel's
	}
	if !longRunning && hostOpenFiles(g.ProcRoot) < autoEBPFMinFDs {
		return nil
	}
	g.counter.lazy = &lazyCounter{verbose: g.Verbose, g: g}
	return g.counter.lazy
}

// lazyCounter loads the counter on its first Count.
type lazyCounter struct {
	g       *Globals
	verbose bool
	once    sync.Once
	c       *ebpfstates.Counter
	err     error
}

// Count loads the counter (once) and counts the calling thread's namespace.
func (l *lazyCounter) Count() (sockdiag.StateCounts, error) {
	l.once.Do(func() {
		l.c, l.err = ebpfstates.Load()
		if l.verbose {
			if l.err != nil {
				fmt.Fprintf(l.g.stderr, "closewait: states: sock_diag count (eBPF unavailable: %s)\n", oneLine(l.err))
			} else {
				fmt.Fprintln(l.g.stderr, "closewait: states: counted in the kernel (eBPF tcp iterator)")
			}
		}
	})
	if l.err != nil {
		return sockdiag.StateCounts{}, l.err
	}
	return l.c.Count()
}

func (g *Globals) closeStateCounter() {
	if l := g.counter.lazy; l != nil && l.c != nil {
		l.c.Close()
		l.c = nil
	}
}
