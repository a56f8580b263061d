//go:build linux

package ebpfsupport

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestClassify(t *testing.T) {
	errMine := errors.New("mine: not supported")
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"no capabilities", fmt.Errorf("load: %w", unix.EPERM), true},
		{"no bpf(2)", unix.ENOSYS, true},
		{"no tracepoint", fmt.Errorf("attach: %w", unix.ENOENT), true},
		{"cilium says so", fmt.Errorf("x: %w", ebpf.ErrNotSupported), true},
		{"verifier", &ebpf.VerifierError{}, false},
		{"other", unix.EINVAL, false},
		{"nil", nil, false},
	} {
		if got := Unsupported(tt.err); got != tt.want {
			t.Errorf("%s: Unsupported %v, want %v", tt.name, got, tt.want)
		}
		if tt.err != nil && errors.Is(Classify(tt.err, errMine), errMine) != tt.want {
			t.Errorf("%s: Classify", tt.name)
		}
	}
}
