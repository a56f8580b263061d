package snapshot

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPurePackagesDoNotLinkEBPF: the packages that judge, render and store
// snapshots take no part in the kernel work; they must not link the eBPF
// library (issue 16, item 11).
func TestPurePackagesDoNotLinkEBPF(t *testing.T) {
	pure := []string{"snapshot", "diagnose", "report", "analyze", "history", "check"}
	for _, p := range pure {
		out, err := exec.Command("go", "list", "-deps", "github.com/closewait/closewait/internal/"+p).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/cilium/ebpf") || strings.HasSuffix(dep, "/internal/sockevents") || strings.HasSuffix(dep, "/internal/ebpfowners") {
				t.Errorf("internal/%s depends on %s", p, dep)
				break
			}
		}
	}
}
