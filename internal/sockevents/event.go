package sockevents

import (
	"errors"
	"time"

	"github.com/closewait/closewait/internal/sockdiag"
)

// ErrNotSupported reports that the feed cannot run here: not Linux, no
// kernel BTF or BTF tracepoints, or missing capabilities. Errors wrapping it
// are the expected reason to fall back to full dumps.
var ErrNotSupported = errors.New("sockevents: eBPF state-change feed not supported")

// License is the licence string of the in-kernel program: it must be
// GPL-compatible for the kernel to allow BTF pointer reads.
const License = "Dual MIT/GPL"

// Event is one TCP socket entering or leaving CLOSE_WAIT.
type Event struct {
	// Old and New are the states before and after; one of them is
	// CLOSE_WAIT.
	Old, New sockdiag.State
	// Time is when the kernel changed the state.
	Time time.Time
	// Socket names the socket as a dump would (family, addresses, ports,
	// bound interface, cookie, network namespace inode), enough for an exact
	// [sockdiag.Conn.Lookup] in that namespace. State is New; the rest
	// (inode, queues, tcp_info) is zero.
	Socket sockdiag.Socket
}

// Entered reports whether the socket entered CLOSE_WAIT.
func (e *Event) Entered() bool { return e.New == sockdiag.CloseWait }
