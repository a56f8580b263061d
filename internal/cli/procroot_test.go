package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHostOpenFilesReadsProcRoot: the host's file-handle count comes from
// the procfs that --path.procfs names, not from /proc.
func TestHostOpenFilesReadsProcRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "sys", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys", "fs", "file-nr"), []byte("4321\t0\t9223372036854775807\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		root string
		want int
	}{
		{root, 4321},
		{t.TempDir(), 0}, // no file-nr there
	} {
		if got := hostOpenFiles(tc.root); got != tc.want {
			t.Errorf("hostOpenFiles(%s) = %d, want %d", tc.root, got, tc.want)
		}
	}
}
