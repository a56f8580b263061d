package leakcheck

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"unsafe"
)

// Frame is one symbolized stack frame.
type Frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

// String returns "function (file:line)".
func (f Frame) String() string {
	return fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)
}

// selfPrefix is this package's function-name prefix, such as
// "github.com/closewait/closewait/leakcheck.".
var selfPrefix = func() string {
	name := runtime.FuncForPC(reflect.ValueOf(New).Pointer()).Name()
	return name[:strings.LastIndex(name, ".")+1]
}()

// infraPrefixes are the packages whose frames never explain a leak: the
// runtime, the network stack, net/http, TLS, buffering and this package.
// A stack's user frames are the ones left after dropping these.
var infraPrefixes = []string{
	"runtime.", "net.", "net/", "crypto/tls.", "internal/", "bufio.",
	"io.", "sync.", "context.", "golang.org/x/net/", "vendor/",
}

func isInfra(fn string) bool {
	if strings.HasPrefix(fn, selfPrefix) {
		return true
	}
	for _, p := range infraPrefixes {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// userFrames symbolizes pcs and returns its frames outside the
// infrastructure packages, top (innermost) first.
func userFrames(pcs []uintptr) []Frame {
	if len(pcs) == 0 {
		return nil
	}
	var out []Frame
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		// Compiler-generated go-statement wrappers (pkg.f.gowrap1) are
		// noise; runtime.Callers hides them, frame pointers do not.
		if f.Function != "" && !isInfra(f.Function) && !strings.Contains(f.Function, ".gowrap") {
			out = append(out, Frame{Function: f.Function, File: f.File, Line: f.Line})
		}
		if !more {
			break
		}
	}
	return out
}

// pcsKey is a map key for a stack: its raw bytes. pcs must not change.
func pcsKey(pcs []uintptr) string {
	if len(pcs) == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(&pcs[0])), len(pcs)*int(unsafe.Sizeof(pcs[0])))
}

// symbolizer caches the user frames of the stacks seen by one report.
type symbolizer map[string][]Frame

func (s symbolizer) frames(pcs []uintptr) []Frame {
	k := pcsKey(pcs)
	if f, ok := s[k]; ok {
		return f
	}
	f := userFrames(pcs)
	s[k] = f
	return f
}
