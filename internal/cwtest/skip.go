package cwtest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The one place that says why a test needs what it needs, as cilium/ebpf's
// testutils.SkipIfNotSupported does: a test skips only for a missing kernel
// feature or privilege, with the same words everywhere, and never where
// the feature is expected (EBPFExpected), so that a broken program cannot
// hide behind a skip.

// needsEBPF is what closewait's eBPF programs need.
const needsEBPF = "needs Linux ≥ 5.8 with kernel BTF, and root or CAP_BPF+CAP_PERFMON"

// SkipIfNotSupported skips tb when err wraps one of notSupported (a
// package's ErrNotSupported), unless this machine should support it
// (EBPFExpected): then it fails. It returns for a nil err or any other
// error, which the caller handles.
func SkipIfNotSupported(tb testing.TB, err error, notSupported ...error) {
	tb.Helper()
	for _, ns := range notSupported {
		if errors.Is(err, ns) {
			SkipNotSupported(tb, err.Error())
			return
		}
	}
}

// SkipNotSupported skips tb because an eBPF feature does not load here
// (why says how it failed), or fails it where EBPFExpected says it should.
func SkipNotSupported(tb testing.TB, why string) {
	tb.Helper()
	if EBPFExpected() {
		tb.Fatalf("not supported, but this machine has kernel BTF and root: %s", why)
		return
	}
	tb.Skipf("eBPF not supported here (%s): %s", needsEBPF, why)
}

// NeedRoot skips tb unless it runs as root; what says what root is for.
func NeedRoot(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("needs root: %s", what)
	}
}

// SkipOnOldKernel skips tb on a kernel older than major.minor, which
// lacks what (a feature named in words).
func SkipOnOldKernel(tb testing.TB, major, minor int, what string) {
	tb.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		tb.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var maj, min int
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) >= 2 {
		maj, _ = strconv.Atoi(parts[0])
		min, _ = strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	if maj < major || maj == major && min < minor {
		tb.Skipf("kernel %s is older than %d.%d: no %s", rel, major, minor, what)
	}
}
