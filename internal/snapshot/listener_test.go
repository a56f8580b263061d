package snapshot_test

import (
	"net/netip"
	"testing"

	"github.com/closewait/closewait/internal/snapshot"
)

// TestSetListener: a socket keeps its listener as one byte, from which
// Listener gives back the address it was set to, for every address a
// listener of its port can have; any other address is refused and leaves
// the socket outbound.
func TestSetListener(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name     string
		local    netip.AddrPort
		listener netip.AddrPort
		ok       bool
	}{
		{"none", ap("10.0.0.5:8080"), netip.AddrPort{}, true},
		{"own address", ap("10.0.0.5:8080"), ap("10.0.0.5:8080"), true},
		{"0.0.0.0", ap("10.0.0.5:8080"), ap("0.0.0.0:8080"), true},
		{"[::] for an IPv4 peer of a dual-stack listener", ap("10.0.0.5:8080"), ap("[::]:8080"), true},
		{"[::] for IPv6", ap("[2001:db8::5]:443"), ap("[::]:443"), true},
		{"own IPv6 address", ap("[2001:db8::5]:443"), ap("[2001:db8::5]:443"), true},
		{"another port", ap("10.0.0.5:8080"), ap("0.0.0.0:9090"), false},
		{"another address", ap("10.0.0.5:8080"), ap("10.0.0.6:8080"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s snapshot.Socket
			s.Local = tc.local
			if ok := s.SetListener(tc.listener); ok != tc.ok {
				t.Fatalf("SetListener(%v) = %v, want %v", tc.listener, ok, tc.ok)
			}
			want := tc.listener
			if !tc.ok {
				want = netip.AddrPort{}
			}
			if got := s.Listener(); got != want || s.Inbound() != want.IsValid() {
				t.Errorf("Listener() = %v, Inbound() = %v; want %v, %v", got, s.Inbound(), want, want.IsValid())
			}
		})
	}
}
