package symbolize

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
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

// TestHintAstray: a "return address" in the heap (the frame-pointer walk
// followed a register that was not a frame pointer) gets the hint that says
// so, on this test's own process.
func TestHintAstray(t *testing.T) {
	s := New("")
	defer s.Close()
	code := uint64(reflect.ValueOf(TestHintAstray).Pointer())
	heap := uint64(uintptr(unsafe.Pointer(&make([]byte, 1<<20)[0])))
	for _, tc := range []struct {
		name   string
		pcs    []uint64
		astray bool
	}{
		{"code only", []uint64{code, code + 1, code + 2}, false},
		{"then the heap", []uint64{code, code + 1, heap}, true},
	} {
		res := s.Stack(os.Getpid(), tc.pcs)
		if got := strings.Contains(res.Hint, "went astray"); got != tc.astray {
			t.Errorf("%s: hint %q, want astray %v", tc.name, res.Hint, tc.astray)
		}
	}
}

// TestInterpreterHints: every interpreter frame's hint names what would
// name the functions it runs, and appears once however many such frames.
func TestInterpreterHints(t *testing.T) {
	for fn, hint := range interpreters {
		if !strings.Contains(hint, fn) && fn != "Interpreter" {
			t.Errorf("%s: hint %q does not name the frame", fn, hint)
		}
		h := hintSet{interpreted: []string{hint}}
		if got := h.String(); got != hint {
			t.Errorf("%s: %q, want %q", fn, got, hint)
		}
	}
}

// TestModuleReplacedAndSwept: a binary replaced at its path (a redeploy, a
// process that execs its new version) is read anew once the process's
// cache is dropped, not named from the old file; Sweep closes the modules
// no stack used lately, and a process still holding one reads it again.
func TestModuleReplacedAndSwept(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "server")
	install := func() {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // a new inode at the same path
			t.Fatal(err)
		}
	}
	install()
	s := New("")
	defer s.Close()
	pid, m := os.Getpid(), mapping{path: path}
	old := s.module(pid, m)
	if old.err != nil {
		t.Fatal(old.err)
	}
	if again := s.module(pid, m); again != old {
		t.Error("the same process and path read the file twice")
	}
	install()
	s.Forget(pid)
	cur := s.module(pid, m)
	if cur == old || cur.id == old.id {
		t.Error("the replaced binary is still named from the old file")
	}

	s.Sweep(1) // cur used since the last sweep: kept
	s.Sweep(1) // not used for one sweep: kept
	if _, ok := s.files[cur.id]; !ok {
		t.Fatal("a module used one sweep ago was dropped")
	}
	s.Sweep(1)
	if _, ok := s.files[cur.id]; ok || !cur.swept {
		t.Fatal("a module unused for two sweeps is still kept")
	}
	if again := s.module(pid, m); again == cur || again.err != nil || again.swept {
		t.Errorf("a process holding a swept module got it back (err %v)", again.err)
	}
}
