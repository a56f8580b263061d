package diagnose

import (
	"slices"
	"testing"
)

// TestRuntimeNames: the list --runtime accepts holds every runtime the rules
// name, once, with "other" last.
func TestRuntimeNames(t *testing.T) {
	got := RuntimeNames()
	for _, want := range []string{"java", "node", "python", "go", "ruby", "dotnet"} {
		if !slices.Contains(got, want) {
			t.Errorf("RuntimeNames() = %v lacks %q", got, want)
		}
	}
	if got[len(got)-1] != "other" || len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
		t.Errorf("RuntimeNames() = %v: want distinct names, other last", got)
	}
}
