package sockdiag

import "time"

// StateChange is one TCP socket entering or leaving CLOSE_WAIT, as a change
// feed reports it (the eBPF feed of package sockevents). It is defined here,
// beside Socket, so that the packages consuming changes (snapshot and what
// builds on it) do not depend on the feed's eBPF implementation.
type StateChange struct {
	// Old and New are the states before and after; one of them is
	// CLOSE_WAIT.
	Old, New State
	// Time is when the kernel changed the state.
	Time time.Time
	// Socket names the socket as a dump would (family, addresses, ports,
	// bound interface, cookie, network namespace inode), enough for an exact
	// [Conn.Lookup] in that namespace. State is New; the rest (inode,
	// queues, tcp_info) is zero.
	Socket Socket
}

// Entered reports whether the socket entered CLOSE_WAIT.
func (e *StateChange) Entered() bool { return e.New == CloseWait }
