//go:build !linux

package diagnose

// syscallNames and archSyscallNames are empty off Linux: thread facts come from Linux's /proc.
var syscallNames, archSyscallNames = map[int]string{}, map[int]string{}
