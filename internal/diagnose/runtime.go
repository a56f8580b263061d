package diagnose

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
)

// RuntimeFacts are the inputs of runtime detection: the process's names and,
// when they could be read, its mapped libraries and Go build info.
type RuntimeFacts struct {
	Exe       string   // path of the executable
	Cmdline   string   // arguments joined by spaces
	Comm      string   // kernel's name of the process
	Libs      []string // base names of mapped shared objects
	GoVersion string   // Go release from the executable's build info; "" if not Go
}

// libRules name a runtime from a mapped shared object, by prefix of its base
// name. They come first: a launcher with any name that maps libjvm.so is Java.
var libRules = []struct{ prefix, runtime string }{
	{"libjvm.so", "java"},
	{"libnode.so", "node"},
	{"libpython", "python"},
	{"libruby", "ruby"},
	{"libcoreclr.so", "dotnet"},
	{"libhostfxr.so", "dotnet"},
}

// nameRules name a runtime from the base name of the executable, of argv[0]
// or of comm.
var nameRules = []struct {
	match   func(string) bool
	runtime string
}{
	{func(n string) bool { return n == "java" || strings.HasPrefix(n, "java") }, "java"},
	{func(n string) bool { return n == "node" || n == "nodejs" || strings.HasPrefix(n, "node") }, "node"},
	{func(n string) bool {
		return strings.HasPrefix(n, "python") || n == "uwsgi" || n == "gunicorn" || n == "celery" || n == "uvicorn"
	}, "python"},
	{func(n string) bool { return strings.HasPrefix(n, "ruby") || n == "puma" || n == "unicorn" }, "ruby"},
	{func(n string) bool { return n == "dotnet" }, "dotnet"},
}

// ClassifyRuntime names a runtime from facts, and says what gave it away:
// mapped libraries first, then Go build info (a Go binary named
// node_exporter is Go), then names.
func ClassifyRuntime(f RuntimeFacts) (runtime, evidence string) {
	for _, r := range libRules {
		for _, l := range f.Libs {
			if strings.HasPrefix(l, r.prefix) {
				return r.runtime, l + " is mapped"
			}
		}
	}
	if f.GoVersion != "" {
		return "go", "the executable is a Go binary (" + f.GoVersion + ")"
	}
	args := strings.Fields(f.Cmdline)
	arg0 := ""
	if len(args) > 0 {
		arg0 = filepath.Base(args[0])
	}
	for _, c := range []struct{ what, name string }{{"executable", filepath.Base(f.Exe)}, {"argv[0]", arg0}, {"comm", f.Comm}} {
		if c.name == "" || c.name == "." {
			continue
		}
		for _, r := range nameRules {
			if r.match(c.name) {
				return r.runtime, c.what + " is " + c.name
			}
		}
	}
	return "other", ""
}

// DetectRuntimeFS names the language runtime of a process ("java", "node",
// "python", "go", "ruby", "dotnet" or "other") from its executable, command
// line, and the mapped libraries and Go build info read through fs (nil:
// names only, and a Go binary shows as "other"); it also says what gave the
// runtime away.
func DetectRuntimeFS(p *procscan.Process, fs *procscan.FS) (runtime, evidence string) {
	rt, ev, _ := detectRuntime(p, fs, nil)
	return rt, ev
}

// detectRuntime is DetectRuntimeFS, with the client libraries the process
// shows. cache, when not nil, keeps hints by executable: forked workers of
// one program (the usual holders of many sockets) are read once.
func detectRuntime(p *procscan.Process, fs *procscan.FS, cache map[string]procscan.RuntimeHints) (rt, evidence string, libraries []string) {
	if p == nil {
		return "other", "", nil
	}
	f := RuntimeFacts{Exe: p.Exe, Cmdline: p.Cmdline, Comm: p.Comm}
	if fs != nil {
		h, ok := cache[p.Exe]
		if !ok {
			h, _ = fs.RuntimeHints(p.PID)
			if cache != nil && p.Exe != "" {
				cache[p.Exe] = h
			}
		}
		f.Libs, f.GoVersion = h.Libs, h.GoVersion
		libraries = detectLibraries(p.Cmdline, h.Libs, h.Modules)
	} else {
		libraries = detectLibraries(p.Cmdline, nil, nil)
	}
	rt, evidence = ClassifyRuntime(f)
	return rt, evidence, libraries
}

// RuntimeNames returns every runtime ClassifyRuntime can name, read from its
// rules, in their order, with "other" last (the values --runtime accepts).
func RuntimeNames() []string {
	var out []string
	add := func(r string) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, r := range libRules {
		add(r.runtime)
	}
	add("go")
	for _, r := range nameRules {
		add(r.runtime)
	}
	add("other")
	return out
}
