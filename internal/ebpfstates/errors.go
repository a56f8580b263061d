package ebpfstates

import "errors"

// ErrNotSupported reports that counting in the kernel cannot run here: not
// Linux, no kernel BTF, no tcp iterator, or missing capabilities. Errors
// wrapping it are the expected reason to count with sock_diag instead.
var ErrNotSupported = errors.New("ebpfstates: eBPF tcp iterator not supported")

// License is the licence string of the in-kernel program: it must be
// GPL-compatible for the kernel to allow BTF pointer access.
const License = "Dual MIT/GPL"
