package leakcheck

import (
	"runtime"
	"strings"
	"testing"
)

//go:noinline
func nest(n int, f func()) {
	if n == 0 {
		f()
		return
	}
	nest(n-1, f)
}

// TestFPMatchesCallers checks that frame-pointer unwinding yields the same
// symbolized user frames as runtime.Callers.
func TestFPMatchesCallers(t *testing.T) {
	if !haveFP {
		t.Skip("no frame-pointer unwinding on " + runtime.GOARCH)
	}
	tr := New(&Options{StackDepth: 64})
	var fp, callers []uintptr
	nest(5, func() {
		fp = tr.capture(0)
		var buf [64]uintptr
		n := runtime.Callers(1, buf[:])
		callers = buf[:n]
	})
	// Same stack except the innermost frame (the capture call site vs
	// the Callers call site, one line apart).
	a, b := names(fp), names(callers)
	if len(a) != len(b) || len(a) < 7 {
		t.Fatalf("fp frames %v\ncallers frames %v", a, b)
	}
	for i := 1; i < len(a); i++ {
		if a[i] != b[i] {
			t.Fatalf("frame %d: fp %s, callers %s", i, a[i], b[i])
		}
	}
}

func names(pcs []uintptr) []string {
	var out []string
	fr := runtime.CallersFrames(pcs)
	for {
		f, more := fr.Next()
		if !strings.HasPrefix(f.Function, "runtime.") && !strings.Contains(f.Function, ".gowrap") {
			out = append(out, f.Function)
		}
		if !more {
			return out
		}
	}
}

// BenchmarkCapture measures one stack capture 20 frames deep, the depth of
// an HTTP client request's GotConn hook.
func BenchmarkCapture(b *testing.B) {
	tr := New(nil)
	b.Run("auto", func(b *testing.B) {
		nest(20, func() {
			for b.Loop() {
				tr.capture(0)
			}
		})
	})
	b.Run("runtime.Callers", func(b *testing.B) {
		var buf [maxStackDepth]uintptr
		nest(20, func() {
			for b.Loop() {
				runtime.Callers(2, buf[:tr.depth])
			}
		})
	})
}
