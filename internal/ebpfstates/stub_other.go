//go:build !linux

package ebpfstates

import (
	"fmt"

	"github.com/closewait/closewait/internal/sockdiag"
)

// Counter is a loaded counting program. On this OS it cannot be created.
type Counter struct{}

// Load returns an error wrapping [ErrNotSupported] on this OS.
func Load() (*Counter, error) {
	return nil, fmt.Errorf("ebpfstates: load: %w: not Linux", ErrNotSupported)
}

// Count returns an error wrapping [ErrNotSupported] on this OS.
func (c *Counter) Count() (sockdiag.StateCounts, error) {
	return sockdiag.StateCounts{}, fmt.Errorf("ebpfstates: count: %w: not Linux", ErrNotSupported)
}

// Close does nothing on this OS.
func (c *Counter) Close() error { return nil }
