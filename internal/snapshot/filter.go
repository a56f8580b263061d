package snapshot

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Filter selects sockets. The zero value matches every socket.
type Filter struct {
	PIDs   map[int]bool    // held by one of these processes (nil: any; empty: none)
	Ports  map[uint16]bool // local or remote port is one of these
	Remote []RemoteMatch   // remote address matches one of these
	MinAge time.Duration   // age estimate at least this (sockets without an age never match a nonzero MinAge)
	NetNS  map[uint64]bool // in one of these network namespaces (inodes)
}

// RemoteMatch matches a remote address by prefix and, when Port is nonzero, port.
type RemoteMatch struct {
	Prefix netip.Prefix
	Port   uint16
}

// ParseRemote reads a --remote value: an address ("10.0.0.7", "::1"), an
// address and port ("10.0.0.7:5432", "[::1]:80"), or a CIDR prefix ("10.0.0.0/8").
func ParseRemote(s string) (RemoteMatch, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a := ap.Addr().Unmap()
		return RemoteMatch{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: ap.Port()}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		a = a.Unmap()
		return RemoteMatch{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return RemoteMatch{Prefix: p.Masked()}, nil
	}
	return RemoteMatch{}, fmt.Errorf("remote %q is not an address, address:port or CIDR prefix", s)
}

// Match reports whether s passes the filter.
func (f *Filter) Match(s *Socket) bool {
	if f.PIDs != nil {
		ok := false
		for _, o := range s.Owners {
			if f.PIDs[o.PID] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Ports) > 0 && !f.Ports[s.Local.Port()] && !f.Ports[s.Remote.Port()] {
		return false
	}
	if len(f.Remote) > 0 {
		ok := false
		for _, r := range f.Remote {
			if r.Prefix.Contains(s.Remote.Addr()) && (r.Port == 0 || r.Port == s.Remote.Port()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.NetNS) > 0 && !f.NetNS[s.NetNS] {
		return false
	}
	if f.MinAge > 0 {
		age, ok := s.Age()
		if !ok || age < f.MinAge {
			return false
		}
	}
	return true
}

// Select returns the snapshot's sockets that pass the filter.
func (snap *Snapshot) Select(f Filter) []*Socket {
	out := make([]*Socket, 0, len(snap.Sockets))
	for i := range snap.Sockets {
		if f.Match(&snap.Sockets[i]) {
			out = append(out, &snap.Sockets[i])
		}
	}
	return out
}
