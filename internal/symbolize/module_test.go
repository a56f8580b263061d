package symbolize

import (
	"os"
	"path/filepath"
	"testing"
)

// TestModuleSharedByFile: one binary seen through several paths (the
// /proc/PID/root of each of its processes) is read once; another file is
// read by itself.
func TestModuleSharedByFile(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "copy")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := New("")
	defer s.Close()
	a, l, c := s.open(exe, exe), s.open(link, link), s.open(other, other)
	for name, m := range map[string]*module{"binary": a, "link": l, "copy": c} {
		if m.err != nil || m.f == nil {
			t.Fatalf("%s: not read: %v", name, m.err)
		}
	}
	if a != l {
		t.Error("the binary and a link to it were read twice")
	}
	if a == c {
		t.Error("a copy of the binary shares its module")
	}
	missing := s.open(filepath.Join(dir, "none"), filepath.Join(dir, "none either"))
	if missing.err == nil {
		t.Error("a missing file was read")
	}
}
