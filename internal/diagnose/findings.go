package diagnose

import (
	"github.com/closewait/closewait/internal/snapshot"
)

// Finding is one explanation of some of a process's CLOSE_WAIT sockets.
type Finding struct {
	// Cause is a stable id: "missing-close", "abandoned-unread", "pool-idle",
	// "not-accepted" or "normal-half-close".
	Cause string
	// Direction is "inbound" (accepted from one of the host's listeners) or "outbound".
	Direction string
	// Remote is the peer address the sockets concentrate on (outbound), or "".
	Remote string
	// LocalPort is the listening port the sockets concentrate on (inbound), or 0.
	LocalPort uint16
	Count     int
	Oldest    float64 // seconds
	// RemoteIdleTimeout estimates, for pool-idle, how long the server let a
	// connection sit idle before closing it (seconds); 0 if unknown.
	RemoteIdleTimeout float64
	// Keepalive counts the sockets on which the application set SO_KEEPALIVE.
	Keepalive int
	Evidence  []string
	NextSteps []string
}

// Findings explains a process's CLOSE_WAIT sockets.
func Findings(p *ProcessReport, snap *snapshot.Snapshot) []Finding {
	return nil
}
