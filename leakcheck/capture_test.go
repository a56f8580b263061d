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
	slow := New(&Options{StackDepth: 64, RuntimeCallers: true})
	var fp, callers []uintptr
	nest(5, func() {
		fp = tr.capture(0)
		callers = slow.capture(0)
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
		// Frame-pointer stacks may start inside capture: skip is
		// ignored there, as leakcheck frames are dropped anyway.
		if !strings.HasPrefix(f.Function, "runtime.") && !strings.Contains(f.Function, ".gowrap") &&
			!strings.Contains(f.Function, "(*Tracker).capture") {
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
	b.Run("framepointers", func(b *testing.B) {
		nest(20, func() {
			for b.Loop() {
				tr.capture(0)
			}
		})
	})
	slow := New(&Options{RuntimeCallers: true})
	b.Run("runtime.Callers", func(b *testing.B) {
		nest(20, func() {
			for b.Loop() {
				slow.capture(0)
			}
		})
	})
}
