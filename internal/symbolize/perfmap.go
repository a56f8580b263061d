package symbolize

import (
	"bufio"
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"
)

// perfMap is a JIT runtime's /tmp/perf-PID.map: "START SIZE name" per line,
// hexadecimal, as Linux perf reads it.
type perfMap struct {
	path    string
	entries []perfEntry
}

type perfEntry struct {
	start, size uint64
	name        string
}

// readPerfMap reads the perf map of pid, looking in the process's own /tmp
// (through its root) under its own pid (the innermost of NSpid), then the
// host's /tmp; nil when there is none.
func (s *Symbolizer) readPerfMap(pid int) *perfMap {
	names := []string{strconv.Itoa(pid)}
	if st, err := os.ReadFile(s.fs.Path(strconv.Itoa(pid), "status")); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] != names[0] {
				names = append([]string{f[len(f)-1]}, names...)
			}
		}
	}
	root := s.fs.Path(strconv.Itoa(pid), "root")
	for _, n := range names {
		for _, path := range []string{root + "/tmp/perf-" + n + ".map", "/tmp/perf-" + n + ".map"} {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			if pm := parsePerfMap(b); len(pm.entries) > 0 {
				pm.path = "/tmp/perf-" + n + ".map"
				return pm
			}
		}
	}
	return nil
}

func parsePerfMap(b []byte) *perfMap {
	pm := &perfMap{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		a, rest, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		sz, name, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(strings.TrimPrefix(a, "0x"), 16, 64)
		size, err2 := strconv.ParseUint(strings.TrimPrefix(sz, "0x"), 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		pm.entries = append(pm.entries, perfEntry{start, size, name})
	}
	sort.SliceStable(pm.entries, func(i, j int) bool { return pm.entries[i].start < pm.entries[j].start })
	return pm
}

// lookup names addr. JIT code moves: entries may overlap, and a few
// entries back are checked for one that covers addr.
func (pm *perfMap) lookup(addr uint64) (string, bool) {
	i := sort.Search(len(pm.entries), func(i int) bool { return pm.entries[i].start > addr }) - 1
	for k := 0; i >= 0 && k < 64; i, k = i-1, k+1 {
		if e := pm.entries[i]; addr < e.start+e.size {
			return e.name, true
		}
	}
	return "", false
}
