package cli

import "runtime/debug"

// When the build did not stamp Version (-ldflags -X), a binary installed
// with `go install github.com/closewait/closewait/cmd/closewait@v1.2.3`
// still knows its module version from its build info.
func init() {
	if Version != "dev" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		Version = bi.Main.Version
	}
}
