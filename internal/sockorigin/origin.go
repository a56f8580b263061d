package sockorigin

import (
	"errors"
	"time"
)

// ErrNotSupported reports that the recorder cannot run here: not Linux, no
// kernel BTF, a kernel without the needed hooks or helpers, or missing
// capabilities (then errors.Is(err, os.ErrPermission) also holds).
var ErrNotSupported = errors.New("sockorigin: eBPF socket-origin recorder not supported")

// License is the licence string of the in-kernel programs: it must be
// GPL-compatible for the kernel to allow BTF pointer reads and
// bpf_probe_read_user from tracing programs.
const License = "Dual MIT/GPL"

// Map bounds. Kernel memory, preallocated: the socket table, MaxSockets ×
// 104-byte records and 8-byte addresses (29 MB); MaxStacks × (MaxDepth+2)
// × 8 bytes plus the hash map's per-entry overhead (about 4.7 MB);
// MaxStacks × 24 bytes of closed counts and their keys (192 KB); a 512 KB
// pid bitmap; and per CPU a scratch buffer of 3 × 9 KB.
const (
	MaxSockets = 1 << 18 // recorded sockets (the table's ways)
	MaxStacks  = 1 << 13 // distinct (process, user stack) pairs
	MaxDepth   = 64      // frames kept per stack
	MaxPIDs    = 4096    // traced processes
)

// TopWords is how many 8-byte words above the user stack pointer each
// record keeps.
const TopWords = 8

// How a socket was made.
const (
	Connected = 1 // connect(): the socket went CLOSE→SYN_SENT in this thread
	Accepted  = 2 // accept(): inet_csk_accept returned it to this thread
)

// Socket is one recorded socket that has not closed yet. The programs key
// sockets by address because the accept hook reaches the socket through
// the fd table, as a plain number the cookie helper does not take; Sample
// gives them their cookie from a TCP socket iterator.
type Socket struct {
	Addr    uint64 // the kernel address of its struct sock, while it lives
	Cookie  uint64 // the socket cookie, as sock_diag reports it (0 when its namespace was not visited)
	TGID    uint32 // the process (host pid)
	TID     uint32 // the thread (host tid)
	How     uint32 // Connected or Accepted
	Created time.Time
	Key     StackKey
	// Top holds the first TopWords words at the user stack pointer when
	// the socket was made: where a leaf function without a frame pointer
	// keeps its return address (package symbolize finds it there).
	Top [TopWords]uint64
}

// StackKey names a (process, stack) pair; StackID is a 64-bit hash of the
// stack's frames, the key of Sample.Stacks. Stacks that differ only in the
// leaf function's caller (found in Top) share one.
type StackKey struct {
	TGID    uint32
	StackID uint64
}

// Sample is what the recorder holds at one moment.
type Sample struct {
	// Sockets are the recorded sockets not closed yet.
	Sockets []Socket
	// Closed counts, per (process, stack), the recorded sockets that closed.
	Closed map[StackKey]uint64
	// Stacks are the stacks named by the keys above, by stack key: the
	// instruction pointer, then the return addresses found by following
	// frame pointers, innermost first.
	Stacks map[uint64][]uint64
	// Dropped counts creations by traced processes that could not be
	// recorded (a full map, or a stack that could not be stored).
	Dropped uint64
}
