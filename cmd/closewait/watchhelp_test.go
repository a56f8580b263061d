package main

import (
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/watch"
)

// TestWatchHelpListsKeys: closewait watch --help lists every key of the live
// view (the same list as its ? screen), among them c for command lines, and
// its columns.
func TestWatchHelpListsKeys(t *testing.T) {
	r := run(t, nil, "watch", "--help")
	if r.code != 0 {
		t.Fatalf("watch --help: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "Keys of the live view") {
		t.Errorf("watch --help has no key list:\n%s", r.stdout)
	}
	for _, k := range append(watch.Keys, watch.Columns...) {
		if !strings.Contains(r.stdout, k) {
			t.Errorf("watch --help does not list %q", k)
		}
	}
	cmdKey := false
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		cmdKey = cmdKey || len(f) > 1 && f[0] == "c" && strings.Contains(l, "command lines")
	}
	if !cmdKey {
		t.Errorf("watch --help does not name the key for command lines:\n%s", r.stdout)
	}
}
