package symbolize

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMaps(t *testing.T) {
	in := []byte(`55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1234 /usr/bin/leaker
55d0c0a21000-55d0c0b00000 r-xp 00021000 fd:01 1234 /usr/bin/leaker
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7f1000000000-7f1000010000 r-xp 00000000 fd:01 99 /tmp/a b.so (deleted)
bad line
`)
	got := parseMaps(in)
	want := []mapping{
		{start: 0x55d0c0a00000, end: 0x55d0c0a21000, off: 0, path: "/usr/bin/leaker"},
		{start: 0x55d0c0a21000, end: 0x55d0c0b00000, off: 0x21000, exec: true, path: "/usr/bin/leaker"},
		{start: 0x7f0000000000, end: 0x7f0000001000, exec: true},
		{start: 0x7f1000000000, end: 0x7f1000010000, exec: true, path: "/tmp/a b.so (deleted)"},
		{start: 0x7ffd00000000, end: 0x7ffd00021000, path: "[stack]"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mapping{})); diff != "" {
		t.Errorf("parseMaps (-want +got):\n%s", diff)
	}
	p := &process{maps: got}
	for _, tc := range []struct {
		pc     uint64
		path   string
		found  bool
		backed bool
	}{
		{0x55d0c0a21010, "/usr/bin/leaker", true, true},
		{0x7f0000000800, "", true, false}, // anonymous: JIT code
		{0x7f1000000100, "/tmp/a b.so (deleted)", true, false},
		{0x10, "", false, false},
	} {
		m, ok := p.find(tc.pc)
		if ok != tc.found || m.path != tc.path || (ok && m.fileBacked() != tc.backed) {
			t.Errorf("find(%#x) = %+v %v, want path %q found %v file-backed %v", tc.pc, m, ok, tc.path, tc.found, tc.backed)
		}
	}
}

func TestPerfMap(t *testing.T) {
	pm := parsePerfMap([]byte(`7f00a0000100 40 Interpreter
7f00a0000200 0x20 LHold;::serve
7f00a0000210 8 moved code
garbage
7f00a0001000 10 py::serve:<string>
`))
	for _, tc := range []struct {
		addr uint64
		want string
	}{
		{0x7f00a0000100, "Interpreter"},
		{0x7f00a000013f, "Interpreter"},
		{0x7f00a0000140, ""},
		{0x7f00a0000214, "moved code"}, // the later, narrower entry covers it
		{0x7f00a000021a, "LHold;::serve"},
		{0x7f00a0001005, "py::serve:<string>"},
		{0x7f00a0001010, ""},
	} {
		if got, ok := pm.lookup(tc.addr); got != tc.want || ok != (tc.want != "") {
			t.Errorf("lookup(%#x) = %q %v, want %q", tc.addr, got, ok, tc.want)
		}
	}
}

func TestDemangle(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"serve", "serve"},
		{"_ZN3net6Server5serveEi", "net::Server::serve"},
		{"_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"},
		{"_RNvCs15kBYyAo9fc_7mycrate7example", "mycrate::example"},
		{"main.leakyDial", "main.leakyDial"},
	} {
		if got := demangleName(tc.in); got != tc.want {
			t.Errorf("demangleName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
