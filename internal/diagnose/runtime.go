package diagnose

import (
	"path/filepath"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
)

// DetectRuntime names the language runtime of a process from its executable
// and command line: "java", "node", "python", "go", "ruby", "dotnet" or "other".
func DetectRuntime(p *procscan.Process) string {
	if p == nil {
		return "other"
	}
	exe := filepath.Base(p.Exe)
	args := strings.Fields(p.Cmdline)
	arg0 := ""
	if len(args) > 0 {
		arg0 = filepath.Base(args[0])
	}
	for _, name := range []string{exe, arg0, p.Comm} {
		switch {
		case name == "java" || strings.HasPrefix(name, "java"):
			return "java"
		case name == "node" || name == "nodejs" || strings.HasPrefix(name, "node"):
			return "node"
		case strings.HasPrefix(name, "python") || name == "uwsgi" || name == "gunicorn":
			return "python"
		case strings.HasPrefix(name, "ruby") || name == "puma" || name == "unicorn":
			return "ruby"
		case name == "dotnet":
			return "dotnet"
		}
	}
	return "other"
}
