package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
)

// TestNamespaceNotRead: a namespace gone between the listing and the dump
// (its last process exited: the real error of entering a path that no
// longer exists) is skipped without a notice; one that cannot be entered
// for another reason gets one.
func TestNamespaceNotRead(t *testing.T) {
	cwtest.NeedRoot(t, "enters network namespaces (CAP_SYS_ADMIN)")
	dir := t.TempDir()
	notNS := filepath.Join(dir, "not-a-namespace")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		notice     bool
	}{
		{"gone since listed", filepath.Join(dir, "4242", "ns", "net"), false},
		{"not a namespace", notNS, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DialNetNS(tc.path)
			if err == nil {
				t.Fatalf("entering %s: no error", tc.path)
			}
			d := &dumper{snap: &Snapshot{}}
			d.notRead(netns.Namespace{Inode: 4026539999, PID: 4242, Path: tc.path}, err)
			if got := len(d.snap.Notices) == 1 && strings.Contains(d.snap.Notices[0], "not read"); got != tc.notice || d.denied != 0 {
				t.Errorf("error %v: notices %q, denied %d; want a notice: %v", err, d.snap.Notices, d.denied, tc.notice)
			}
		})
	}
}
