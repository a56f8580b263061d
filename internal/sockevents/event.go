package sockevents

import (
	"errors"

	"github.com/closewait/closewait/internal/sockdiag"
)

// ErrNotSupported reports that the feed cannot run here: not Linux, no
// kernel BTF or BTF tracepoints, or missing capabilities. Errors wrapping it
// are the expected reason to fall back to full dumps.
var ErrNotSupported = errors.New("sockevents: eBPF state-change feed not supported")

// License is the licence string of the in-kernel program: it must be
// GPL-compatible for the kernel to allow BTF pointer reads.
const License = "Dual MIT/GPL"

// Event is one TCP socket entering or leaving CLOSE_WAIT. The type lives in
// sockdiag so that its consumers need not link the eBPF code.
type Event = sockdiag.StateChange
