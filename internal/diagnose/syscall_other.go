//go:build linux && !amd64

package diagnose

// archSyscallNames names the blocking system calls that exist only on some architectures.
var archSyscallNames = map[int]string{}
