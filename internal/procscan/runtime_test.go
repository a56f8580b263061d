package procscan

import (
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMappedLibs(t *testing.T) {
	maps := []byte(`55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1317 /usr/lib/jvm/java-17-openjdk-amd64/bin/java
7f3a10000000-7f3a10021000 rw-p 00000000 00:00 0
7f3a12000000-7f3a12e00000 r-xp 00000000 08:01 2201 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f3a13000000-7f3a13200000 r--p 00000000 08:01 2202 /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a13200000-7f3a13400000 r-xp 00200000 08:01 2202 /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a14000000-7f3a14001000 r--p 00000000 08:01 2203 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 (deleted)
7ffd2c5e0000-7ffd2c601000 rw-p 00000000 00:00 0 [stack]
`)
	want := []string{"libc.so.6", "libjvm.so", "libpython3.11.so.1.0"}
	if diff := cmp.Diff(want, ParseMappedLibs(maps)); diff != "" {
		t.Errorf("libs (-want +got):\n%s", diff)
	}
}

func TestParseThreadStatAndSyscall(t *testing.T) {
	tests := []struct {
		stat    string
		comm    string
		state   byte
		syscall string
		nr      int
	}{
		{"4121 (java) S 1 4121 4121 0 -1", "java", 'S', "202 0x7f 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f", 202},
		{"4122 (C2 CompilerThre) R 1 4121", "C2 CompilerThre", 'R', "running", -1},
		{"77 (a) b) (c) D 1 77", "a) b) (c", 'D', "-1 0x7ffd 0x7f", -1},
	}
	for _, tt := range tests {
		th, ok := ParseThreadStat([]byte(tt.stat))
		if !ok || th.Comm != tt.comm || th.State != tt.state {
			t.Errorf("ParseThreadStat(%q) = %+v, %v", tt.stat, th, ok)
		}
		if got := ParseSyscall([]byte(tt.syscall)); got != tt.nr {
			t.Errorf("ParseSyscall(%q) = %d, want %d", tt.syscall, got, tt.nr)
		}
	}
	if _, ok := ParseThreadStat([]byte("garbage")); ok {
		t.Errorf("garbage parsed")
	}
	if ParseSyscall(nil) != -2 || ParseSyscall([]byte("x")) != -2 {
		t.Errorf("unreadable syscall should be -2")
	}
}

// The test binary is a Go program with several threads: read it live.
func TestRuntimeHintsAndThreadsOfSelf(t *testing.T) {
	fs := NewFS("")
	h, err := fs.RuntimeHints(os.Getpid())
	if err != nil || h.GoVersion != runtime.Version() {
		t.Errorf("RuntimeHints(self) = %+v, %v; want Go version %s", h, err, runtime.Version())
	}
	ts, err := fs.Threads(os.Getpid(), 0)
	if err != nil || len(ts) < 2 {
		t.Fatalf("Threads(self) = %d threads, %v", len(ts), err)
	}
	if !slices.ContainsFunc(ts, func(th Thread) bool { return th.TID == os.Getpid() && th.State != 0 }) {
		t.Errorf("no main thread in %+v", ts)
	}
	if ts, _ := fs.Threads(os.Getpid(), 1); len(ts) != 1 {
		t.Errorf("limit 1 gave %d threads", len(ts))
	}
	if _, err := fs.Threads(1<<30, 0); err == nil {
		t.Errorf("threads of a missing process: no error")
	}
}

// BenchmarkRuntimeHintsSelf reads the test binary's maps and Go build info:
// the extra I/O per CLOSE_WAIT holder when the report detects runtimes.
func BenchmarkRuntimeHintsSelf(b *testing.B) {
	fs := NewFS("")
	for b.Loop() {
		if _, err := fs.RuntimeHints(os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkThreadsSelf reads the states of the test binary's threads.
func BenchmarkThreadsSelf(b *testing.B) {
	fs := NewFS("")
	ts, _ := fs.Threads(os.Getpid(), 0)
	b.ReportMetric(float64(len(ts)), "threads")
	for b.Loop() {
		if _, err := fs.Threads(os.Getpid(), 0); err != nil {
			b.Fatal(err)
		}
	}
}
