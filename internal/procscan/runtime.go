package procscan

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// RuntimeHints are the facts about a process's executable that name its
// language runtime beyond its name: the shared libraries it maps and, for a
// Go binary, the Go version recorded in its build info.
type RuntimeHints struct {
	// Libs are the base names of the shared objects mapped into the process
	// (from /proc/PID/maps), sorted and without duplicates, e.g. "libjvm.so".
	Libs []string
	// GoVersion is the Go release the executable was built with ("go1.26.8"),
	// read from its .go.buildinfo section; empty for a non-Go executable.
	GoVersion string
	// Modules are the module paths a Go executable was built with (its
	// build info's dependencies), e.g. "github.com/jackc/pgx/v5".
	Modules []string
}

// RuntimeHints reads /proc/PID/maps and the build info of /proc/PID/exe.
// Reading another user's maps or exe needs CAP_SYS_PTRACE (or root); what
// cannot be read is left empty and the first such error is returned with
// whatever was read.
func (fs FS) RuntimeHints(pid int) (RuntimeHints, error) {
	var h RuntimeHints
	var firstErr error
	b, err := os.ReadFile(fs.pidPath(pid, "maps"))
	if err != nil {
		firstErr = fmt.Errorf("maps of %d: %w", pid, err)
	} else {
		h.Libs = ParseMappedLibs(b)
	}
	if bi, err := buildinfo.ReadFile(fs.pidPath(pid, "exe")); err == nil {
		h.GoVersion = bi.GoVersion
		for _, d := range bi.Deps {
			h.Modules = append(h.Modules, d.Path)
		}
	}
	return h, firstErr
}

// ParseMappedLibs returns the base names of the shared objects named in the
// text of /proc/PID/maps ("….so" or "….so.N"), sorted, without duplicates.
func ParseMappedLibs(b []byte) []string {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || f[5][0] != '/' {
			continue
		}
		name := filepath.Base(string(f[5]))
		if strings.Contains(name, ".so") {
			seen[name] = true
		}
	}
	libs := make([]string, 0, len(seen))
	for n := range seen {
		libs = append(libs, n)
	}
	slices.Sort(libs)
	return libs
}
