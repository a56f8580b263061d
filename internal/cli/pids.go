package cli

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/snapshot"
)

// CompletePIDsCmd is `closewait complete-pids`, hidden: the process ids the
// shell completions offer for explain PID and --pid. The processes holding
// CLOSE_WAIT sockets come first, most sockets first, each with its comm and
// count; then the other processes (kernel threads left out), by pid. One
// "PID<TAB>description" line each.
type CompletePIDsCmd struct {
	HostFlags
}

// Run prints the candidates.
func (c *CompletePIDsCmd) Run(g *Globals) error {
	type cand struct {
		pid, cw int
		comm    string
	}
	var holders []cand
	seen := map[int]bool{}
	if snap, err := g.take(snapshot.Options{}); err == nil {
		per := map[int]int{}
		for _, s := range snap.Sockets {
			for _, o := range s.Owners {
				per[o.PID]++
			}
		}
		for pid, n := range per {
			comm := ""
			if p := snap.Processes[pid]; p != nil {
				comm = p.Comm
			}
			holders = append(holders, cand{pid, n, comm})
			seen[pid] = true
		}
	}
	slices.SortFunc(holders, func(a, b cand) int { return cmp.Or(cmp.Compare(b.cw, a.cw), cmp.Compare(a.pid, b.pid)) })
	for _, h := range holders {
		fmt.Fprintf(g.stdout, "%d\t%s (%d CLOSE_WAIT)\n", h.pid, h.comm, h.cw)
	}
	fs := g.procFS()
	ents, err := os.ReadDir(fs.Root())
	if err != nil {
		return nil // completion: say nothing rather than fail
	}
	var rest []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || seen[pid] {
			continue
		}
		// Kernel threads have an empty command line: nothing to explain.
		if b, err := os.ReadFile(fs.Path(e.Name(), "cmdline")); err != nil || len(b) == 0 {
			continue
		}
		rest = append(rest, pid)
	}
	slices.Sort(rest)
	for _, pid := range rest {
		comm, _ := os.ReadFile(fs.Path(strconv.Itoa(pid), "comm"))
		fmt.Fprintf(g.stdout, "%d\t%s\n", pid, strings.TrimSpace(string(comm)))
	}
	return nil
}
