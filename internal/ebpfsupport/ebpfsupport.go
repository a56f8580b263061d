//go:build linux

// Package ebpfsupport tells, for the project's eBPF programs (the owner
// iterator, the change feed, the socket-origin recorder), an error that
// means "this cannot run here" from one that means "the program is wrong".
package ebpfsupport

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Unsupported reports whether err, from loading or attaching a program,
// means the feature cannot run here: no kernel BTF, a missing program or
// attach type, bpf(2) missing (ENOSYS) or refused (EPERM: no capabilities),
// a missing tracepoint or function (ENOENT). A verifier rejection is not
// one: it means the program or its layout is wrong for this kernel.
func Unsupported(err error) bool {
	var verr *ebpf.VerifierError
	if err == nil || errors.As(err, &verr) {
		return false
	}
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, btf.ErrNotSupported) ||
		errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOENT)
}

// Classify wraps err with sentinel (a package's ErrNotSupported) when it
// is [Unsupported], so callers can fall back with errors.Is.
func Classify(err, sentinel error) error {
	if Unsupported(err) {
		return fmt.Errorf("%w: %w", sentinel, err)
	}
	return err
}
