package cli

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
)

// ProgramFlags select processes by program, as `netstat -antp | grep java`
// does by eye: the report, sockets, watch and destroy take them.
type ProgramFlags struct {
	Comm    []string `name:"comm" short:"c" sep:"," placeholder:"NAME" help:"Only processes whose name (comm, or the file name of argv[0]) is NAME; shell patterns allowed ('python*'). Repeat or comma-separate."`
	Runtime []string `name:"runtime" sep:"," placeholder:"RUNTIME" help:"Only processes of these runtimes: java, node, python, go, ruby, dotnet, other (as the report's runtime field)."`
}

// set reports whether a program filter was given.
func (f ProgramFlags) set() bool { return len(f.Comm) > 0 || len(f.Runtime) > 0 }

// check validates the values.
func (f ProgramFlags) check() error {
	for _, c := range f.Comm {
		if c == "" {
			return fmt.Errorf("--comm needs a name")
		}
		if _, err := path.Match(c, ""); err != nil {
			return fmt.Errorf("--comm %q is not a valid pattern: %v", c, err)
		}
	}
	for _, r := range f.Runtime {
		if !slices.Contains(diagnose.RuntimeNames(), r) {
			return fmt.Errorf("--runtime %q is not a runtime (one of %s)", r, strings.Join(diagnose.RuntimeNames(), ", "))
		}
	}
	return nil
}

// pids returns the processes of snap that hold a listed socket and match the
// program filter, within base when base is not nil. It returns base when no
// program filter is set, and otherwise a non-nil map (empty when nothing
// matches: a filter that matches nothing selects nothing).
func (f ProgramFlags) pids(snap *snapshot.Snapshot, fs procscan.FS, base map[int]bool) map[int]bool {
	if !f.set() {
		return base
	}
	out := map[int]bool{}
	for pid, p := range snap.Processes {
		if base != nil && !base[pid] {
			continue
		}
		if f.match(p, &fs) {
			out[pid] = true
		}
	}
	return out
}

func (f ProgramFlags) match(p *procscan.Process, fs *procscan.FS) bool {
	if p == nil {
		return false
	}
	if len(f.Comm) > 0 {
		argv0 := p.Cmdline
		if i := strings.IndexByte(argv0, ' '); i >= 0 {
			argv0 = argv0[:i]
		}
		names := []string{p.Comm, path.Base(argv0)}
		ok := false
		for _, c := range f.Comm {
			for _, n := range names {
				m, _ := path.Match(c, n)
				ok = ok || m
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Runtime) > 0 {
		rt, _ := diagnose.DetectRuntimeFS(p, fs)
		if !slices.Contains(f.Runtime, rt) {
			return false
		}
	}
	return true
}

// checkPIDs fails, with one line naming them, when processes given with
// --pid do not exist: every command treats a dead pid alike (exit 3), rather
// than printing an empty selection.
func (g *Globals) checkPIDs(pids []int) error {
	fs := g.procFS()
	var gone []string
	for _, pid := range pids {
		if pid <= 0 {
			return fmt.Errorf("--pid %d is not a process id", pid)
		}
		if _, err := os.Stat(fs.Path(strconv.Itoa(pid))); err != nil {
			gone = append(gone, strconv.Itoa(pid))
		}
	}
	switch len(gone) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("no process %s (it does not exist or has exited)", gone[0])
	}
	return fmt.Errorf("no processes %s (they do not exist or have exited)", strings.Join(gone, ", "))
}
