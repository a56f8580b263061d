package sockevents

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/closewait/closewait/internal/btflayout"
)

// span is where a struct member sits, from BTF.
type span = btflayout.Field

// layout holds every kernel struct member the program reads or the decoder
// takes from the copied head of struct sock.
type layout struct {
	// struct sock (include/net/sock.h): sk_protocol, and the head of its
	// first member, struct sock_common, copied whole into each record.
	protocol span
	// Members of struct sock_common, as offsets into struct sock.
	daddr, rcvSaddr, dport, num, family, boundDevIf, net span
	// IPv6 addresses; size 0 on a kernel built without IPv6.
	v6Daddr, v6RcvSaddr span
	// struct net: ns.inum, the namespace's inode number.
	nsInum span
	// head is how many bytes of struct sock each record carries: every
	// sock_common member above, rounded up to 8.
	head uint32
}

// maxHead bounds the copied head so that the record fits the BPF stack with
// room to spare; sock_common's addresses sit in its first 100 bytes.
const maxHead = 160

// kernelLayout reads the layout from kernel BTF.
func kernelLayout(spec *btf.Spec) (layout, error) {
	var sock, net *btf.Struct
	if err := spec.TypeByName("sock", &sock); err != nil {
		return layout{}, fmt.Errorf("btf struct sock: %w", err)
	}
	if err := spec.TypeByName("net", &net); err != nil {
		return layout{}, fmt.Errorf("btf struct net: %w", err)
	}
	var l layout
	want := []struct {
		t        btf.Type
		path     []string
		dst      *span
		optional bool
	}{
		{sock, []string{"sk_protocol"}, &l.protocol, false},
		{sock, []string{"__sk_common", "skc_daddr"}, &l.daddr, false},
		{sock, []string{"__sk_common", "skc_rcv_saddr"}, &l.rcvSaddr, false},
		{sock, []string{"__sk_common", "skc_dport"}, &l.dport, false},
		{sock, []string{"__sk_common", "skc_num"}, &l.num, false},
		{sock, []string{"__sk_common", "skc_family"}, &l.family, false},
		{sock, []string{"__sk_common", "skc_bound_dev_if"}, &l.boundDevIf, false},
		{sock, []string{"__sk_common", "skc_net"}, &l.net, false},
		{sock, []string{"__sk_common", "skc_v6_daddr"}, &l.v6Daddr, true},
		{sock, []string{"__sk_common", "skc_v6_rcv_saddr"}, &l.v6RcvSaddr, true},
		{net, []string{"ns", "inum"}, &l.nsInum, false},
	}
	for _, w := range want {
		s, err := btflayout.Member(w.t, w.path...)
		if errors.Is(err, btflayout.ErrNoMember) && w.optional {
			continue
		}
		if err != nil {
			return layout{}, fmt.Errorf("btf %s.%v: %w", w.t.TypeName(), w.path, err)
		}
		*w.dst = s
	}
	for _, c := range []struct {
		name string
		s    span
		size uint32
	}{
		{"sk_protocol", l.protocol, 2}, {"skc_daddr", l.daddr, 4}, {"skc_rcv_saddr", l.rcvSaddr, 4},
		{"skc_dport", l.dport, 2}, {"skc_num", l.num, 2}, {"skc_family", l.family, 2},
		{"skc_bound_dev_if", l.boundDevIf, 4}, {"skc_net", l.net, 8}, {"net.ns.inum", l.nsInum, 4},
	} {
		if c.s.Size != c.size {
			return layout{}, fmt.Errorf("btf %s: %d bytes, want %d", c.name, c.s.Size, c.size)
		}
	}
	for _, s := range []span{l.v6Daddr, l.v6RcvSaddr} {
		if s.Size != 0 && s.Size != 16 {
			return layout{}, fmt.Errorf("btf sock_common IPv6 address: %d bytes, want 16", s.Size)
		}
	}
	for _, s := range []span{l.daddr, l.rcvSaddr, l.dport, l.num, l.family, l.boundDevIf, l.v6Daddr, l.v6RcvSaddr} {
		l.head = max(l.head, s.End())
	}
	l.head = (l.head + 7) &^ 7
	if l.head > maxHead {
		return layout{}, fmt.Errorf("btf sock_common: addresses end at byte %d, beyond %d", l.head, maxHead)
	}
	return l, nil
}
