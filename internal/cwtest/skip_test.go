package cwtest

import (
	"errors"
	"fmt"
	"testing"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of
// ending the test (the helpers call nothing else).
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestSkipIfNotSupported: only a not-supported error skips, and only where
// eBPF is not expected; where it is, the test fails instead.
func TestSkipIfNotSupported(t *testing.T) {
	errNS := errors.New("x: not supported")
	for _, tc := range []struct {
		name string
		err  error
		skip bool
	}{
		{"nil", nil, false},
		{"another error", errors.New("permission denied"), false},
		{"not supported, wrapped", fmt.Errorf("load: %w", errNS), true},
	} {
		r := &recorder{}
		SkipIfNotSupported(r, tc.err, errNS)
		wantSkip, wantFail := tc.skip && !EBPFExpected(), tc.skip && EBPFExpected()
		if r.skipped != wantSkip || r.failed != wantFail {
			t.Errorf("%s: skipped %v failed %v, want %v %v (EBPFExpected %v)", tc.name, r.skipped, r.failed, wantSkip, wantFail, EBPFExpected())
		}
	}
}
