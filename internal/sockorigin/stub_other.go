//go:build !linux

package sockorigin

import "fmt"

// Recorder records socket origins. On this OS it cannot be created.
type Recorder struct{}

// Open returns an error wrapping [ErrNotSupported] on this OS.
func Open() (*Recorder, error) {
	return nil, fmt.Errorf("sockorigin: open: %w: not Linux", ErrNotSupported)
}

// AddPID returns an error wrapping [ErrNotSupported] on this OS.
func (r *Recorder) AddPID(pid int) error { return ErrNotSupported }

// RemovePID returns an error wrapping [ErrNotSupported] on this OS.
func (r *Recorder) RemovePID(pid int) error { return ErrNotSupported }

// Sample returns an error wrapping [ErrNotSupported] on this OS.
func (r *Recorder) Sample(netnsPaths ...string) (*Sample, error) { return nil, ErrNotSupported }

// SetAccepts returns an error wrapping [ErrNotSupported] on this OS.
func (r *Recorder) SetAccepts(on bool) error { return ErrNotSupported }

// Accepts reports false on this OS.
func (r *Recorder) Accepts() bool { return false }

// Close does nothing on this OS.
func (r *Recorder) Close() error { return nil }
