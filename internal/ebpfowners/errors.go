package ebpfowners

import "errors"

// ErrNotSupported reports that the eBPF owner lookup cannot run here: not
// Linux, no kernel BTF, a kernel without the task_file iterator, or missing
// capabilities. Errors wrapping it are the expected reason to fall back to
// the /proc walk.
var ErrNotSupported = errors.New("ebpfowners: eBPF task_file iterator not supported")

// License is the licence string of the in-kernel program: it must be
// GPL-compatible for the kernel to allow BTF pointer access.
const License = "Dual MIT/GPL"

// RecordSize is the size of one record emitted by the program:
// {tgid u32, fd u32, inode u64} in native byte order.
const RecordSize = 16
