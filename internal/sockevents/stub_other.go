//go:build !linux

package sockevents

import "fmt"

// Feed is a loaded state-change program. On this OS it cannot be created.
type Feed struct{}

// Open returns an error wrapping [ErrNotSupported] on this OS.
func Open() (*Feed, error) {
	return nil, fmt.Errorf("sockevents: open: %w: not Linux", ErrNotSupported)
}

// Drain returns an error wrapping [ErrNotSupported] on this OS.
func (f *Feed) Drain(fn func(*Event)) (bool, error) {
	return false, fmt.Errorf("sockevents: drain: %w: not Linux", ErrNotSupported)
}

// Close does nothing on this OS.
func (f *Feed) Close() error { return nil }

// Drains returns 0 on this OS.
func (f *Feed) Drains() uint64 { return 0 }
