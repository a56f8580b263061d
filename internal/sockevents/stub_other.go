//go:build !linux

package sockevents

import (
	"fmt"
	"time"
)

// Feed is a loaded state-change program. On this OS it cannot be created.
type Feed struct{}

// Open returns an error wrapping [ErrNotSupported] on this OS.
func Open() (*Feed, error) {
	return nil, fmt.Errorf("sockevents: open: %w: not Linux", ErrNotSupported)
}

// OpenRing returns an error wrapping [ErrNotSupported] on this OS.
func OpenRing(uint32) (*Feed, error) { return Open() }

// RingFor returns 0 on this OS.
func RingFor(time.Duration) uint32 { return 0 }

// Drain returns an error wrapping [ErrNotSupported] on this OS.
func (f *Feed) Drain(fn func(*Event)) (bool, error) {
	return false, fmt.Errorf("sockevents: drain: %w: not Linux", ErrNotSupported)
}

// Close does nothing on this OS.
func (f *Feed) Close() error { return nil }

// Drains returns 0 on this OS.
func (f *Feed) Drains() uint64 { return 0 }
