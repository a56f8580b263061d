package sockdiag

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// State is a TCP state as numbered by the kernel (include/net/tcp_states.h).
type State uint8

// TCP states, in the kernel's numbering.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
	maxState
)

var stateNames = [...]string{
	Established: "ESTABLISHED",
	SynSent:     "SYN_SENT",
	SynRecv:     "SYN_RECV",
	FinWait1:    "FIN_WAIT1",
	FinWait2:    "FIN_WAIT2",
	TimeWait:    "TIME_WAIT",
	Close:       "CLOSE",
	CloseWait:   "CLOSE_WAIT",
	LastAck:     "LAST_ACK",
	Listen:      "LISTEN",
	Closing:     "CLOSING",
	NewSynRecv:  "NEW_SYN_RECV",
}

// String returns the state's name in the kernel's spelling, e.g. "CLOSE_WAIT".
func (s State) String() string {
	if s > 0 && s < maxState {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// ParseState reads a state name in any of the usual spellings:
// "CLOSE_WAIT", "close-wait", "close_wait", "CLOSE-WAIT" (ss(8) and netstat(8) forms),
// and the ss(8) short forms "estab", "syn-recv" and so on.
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(name), "-", "_"))
	switch n {
	case "ESTAB":
		return Established, nil
	case "FIN_WAIT_1":
		return FinWait1, nil
	case "FIN_WAIT_2":
		return FinWait2, nil
	case "CLOSED", "UNCONN":
		return Close, nil
	}
	for s := Established; s < maxState; s++ {
		if stateNames[s] == n {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q", name)
}

// States returns every TCP state in the kernel's order.
func States() []State {
	out := make([]State, 0, maxState-1)
	for s := Established; s < maxState; s++ {
		out = append(out, s)
	}
	return out
}

// StateSet is a set of TCP states as the kernel's idiag_states bitmask (1 << state).
type StateSet uint32

// AllStates is the set of every TCP state.
const AllStates StateSet = 0xFFF &^ 1

// NewStateSet returns the set holding the given states.
func NewStateSet(states ...State) StateSet {
	var s StateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// Has reports whether st is in the set.
func (s StateSet) Has(st State) bool { return s&(1<<st) != 0 }

// TCPInfo is the part of the kernel's struct tcp_info that closewait uses.
// Times are as the kernel keeps them: milliseconds since the event.
type TCPInfo struct {
	State         uint8
	Retransmits   uint8  // tcpi_retransmits: unrecovered RTO timeouts
	LastDataSent  uint32 // ms since the last data segment was sent
	LastAckRecv   uint32 // ms since the last ACK was received: for an idle CLOSE_WAIT socket, since the FIN
	LastDataRecv  uint32 // ms since the last data segment was received
	RTT           uint32 // smoothed round-trip time, µs
	RTTVar        uint32 // µs
	TotalRetrans  uint32
	BytesReceived uint64 // tcpi_bytes_received (0 on kernels before 4.1)
	BytesAcked    uint64 // tcpi_bytes_acked
}

// Timer values of inet_diag_msg.idiag_timer.
const (
	TimerNone      = 0
	TimerRetrans   = 1
	TimerKeepalive = 2
	TimerTimeWait  = 3
	TimerProbe     = 4
)

// Socket is one TCP socket as the kernel reports it.
//
// Addresses are normalised: an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// is returned as the IPv4 address, so dual-stack sockets group with IPv4 peers.
type Socket struct {
	// Fields are ordered largest first: at 1M sockets every padding byte is a megabyte.
	Local   netip.AddrPort
	Remote  netip.AddrPort
	Inode   uint64 // 0 when the socket has no file (e.g. not yet accepted)
	Cookie  uint64 // the kernel's socket cookie, needed by Destroy
	NetNS   uint64 // inode of the network namespace the socket was dumped from; 0 if unknown
	RecvQ   uint32 // bytes not read by the app; for CLOSE_WAIT the FIN counts as one. For LISTEN: the accept queue length.
	SendQ   uint32 // bytes not acknowledged by the peer. For LISTEN: the backlog.
	UID     uint32
	IfIndex uint32 // bound interface, 0 if none

	TimerExpires uint32 // ms until the timer fires
	Timer        uint8  // one of the Timer constants
	TimerRetrans uint8  // idiag_retrans: probes or retransmits sent by the timer

	Family  uint8 // AF_INET or AF_INET6: the socket's own family, before normalising
	State   State
	HasInfo bool    // Info was reported by the kernel
	Info    TCPInfo // valid only when HasInfo
}

// Age estimates how long ago the socket received its last ACK, which for an
// idle CLOSE_WAIT socket is when the peer's FIN arrived. It is an estimate:
// acknowledged keepalive probes reset it. ok is false without tcp_info and
// for listening sockets, which receive no ACKs of their own.
func (s *Socket) Age() (age time.Duration, ok bool) {
	if !s.HasInfo || s.State == Listen {
		return 0, false
	}
	return time.Duration(s.Info.LastAckRecv) * time.Millisecond, true
}

// KeepaliveSet reports whether the socket's keepalive timer is armed, which
// means the application set SO_KEEPALIVE on it.
func (s *Socket) KeepaliveSet() bool { return s.Timer == TimerKeepalive }

// NormalizeAddr returns a as IPv4 when it is an IPv4-mapped IPv6 address.
func NormalizeAddr(a netip.Addr) netip.Addr { return a.Unmap() }
