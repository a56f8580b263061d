//go:build !linux

package ebpfowners

import "fmt"

// Iterator is a loaded task_file program. On this OS it cannot be created.
type Iterator struct{}

// Load returns an error wrapping [ErrNotSupported] on this OS.
func Load() (*Iterator, error) {
	return nil, fmt.Errorf("ebpfowners: load: %w: not Linux", ErrNotSupported)
}

// Each returns an error wrapping [ErrNotSupported] on this OS.
func (it *Iterator) Each(fn func(pid, fd int, inode uint64)) error {
	return fmt.Errorf("ebpfowners: each: %w: not Linux", ErrNotSupported)
}

// EachWanted returns an error wrapping [ErrNotSupported] on this OS.
func (it *Iterator) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	return fmt.Errorf("ebpfowners: each wanted: %w: not Linux", ErrNotSupported)
}

// Close does nothing on this OS.
func (it *Iterator) Close() error { return nil }

// InInitPIDNS reports false on this OS.
func InInitPIDNS() bool { return false }

// EachWantedIn returns an error wrapping [ErrNotSupported] on this OS.
func (it *Iterator) EachWantedIn(pids []int, wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	return fmt.Errorf("ebpfowners: each wanted in: %w: not Linux", ErrNotSupported)
}
