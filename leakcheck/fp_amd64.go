package leakcheck

import "unsafe"

// getfp returns the frame pointer of its caller. Implemented in
// fp_amd64.s.
func getfp() unsafe.Pointer

// fpCallers fills pcs with the return addresses of the calling goroutine's
// frames by following the frame-pointer chain, as the runtime's execution
// tracer does, starting at the caller of fpCallers' caller. It costs a few
// nanoseconds per frame, against ~80 ns for runtime.Callers. The addresses
// are return PCs, so runtime.CallersFrames symbolizes them (inlined
// frames included).
//
//go:noinline
//go:nosplit
func fpCallers(pcs []uintptr) int {
	fp := getfp() // this frame: [fp] caller's fp, [fp+8] return PC into caller
	if fp == nil {
		return 0
	}
	fp = *(*unsafe.Pointer)(fp) // skip our caller (capture)
	n := 0
	for n < len(pcs) && fp != nil {
		pcs[n] = *(*uintptr)(unsafe.Add(fp, 8))
		n++
		fp = *(*unsafe.Pointer)(fp)
	}
	return n
}

const haveFP = true
