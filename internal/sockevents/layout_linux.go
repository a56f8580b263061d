package sockevents

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// span is where a struct member sits: byte offset from the start of the
// outer struct and size in bytes, both from BTF.
type span struct {
	off, size uint32
}

func (s span) end() uint32 { return s.off + s.size }

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
		s, err := memberPath(w.t, w.path...)
		if errors.Is(err, errNoMember) && w.optional {
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
		if c.s.size != c.size {
			return layout{}, fmt.Errorf("btf %s: %d bytes, want %d", c.name, c.s.size, c.size)
		}
	}
	for _, s := range []span{l.v6Daddr, l.v6RcvSaddr} {
		if s.size != 0 && s.size != 16 {
			return layout{}, fmt.Errorf("btf sock_common IPv6 address: %d bytes, want 16", s.size)
		}
	}
	for _, s := range []span{l.daddr, l.rcvSaddr, l.dport, l.num, l.family, l.boundDevIf, l.v6Daddr, l.v6RcvSaddr} {
		l.head = max(l.head, s.end())
	}
	l.head = (l.head + 7) &^ 7
	if l.head > maxHead {
		return layout{}, fmt.Errorf("btf sock_common: addresses end at byte %d, beyond %d", l.head, maxHead)
	}
	return l, nil
}

var errNoMember = errors.New("no such member")

// memberPath finds t.path[0].path[1]... (descending into anonymous structs
// and unions at each step) and returns its offset from the start of t and
// its size.
func memberPath(t btf.Type, path ...string) (span, error) {
	var off btf.Bits
	for _, name := range path {
		o, typ, err := findMember(t, name, off)
		if err != nil {
			return span{}, fmt.Errorf("%s: %w", name, err)
		}
		off, t = o, typ
	}
	if off%8 != 0 {
		return span{}, fmt.Errorf("bit offset %d is not byte aligned", off)
	}
	size, err := btf.Sizeof(t)
	if err != nil {
		return span{}, fmt.Errorf("size: %w", err)
	}
	return span{off: uint32(off / 8), size: uint32(size)}, nil
}

// findMember returns the bit offset (plus base) and type of the named member.
func findMember(t btf.Type, name string, base btf.Bits) (btf.Bits, btf.Type, error) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return 0, nil, fmt.Errorf("%s is not a struct or union: %w", t, errNoMember)
	}
	for _, m := range members {
		if m.Name == name {
			if m.BitfieldSize != 0 {
				return 0, nil, errors.New("member is a bitfield")
			}
			return base + m.Offset, m.Type, nil
		}
	}
	for _, m := range members {
		if m.Name != "" {
			continue
		}
		off, typ, err := findMember(m.Type, name, base+m.Offset)
		if err == nil {
			return off, typ, nil
		}
		if !errors.Is(err, errNoMember) {
			return 0, nil, err
		}
	}
	return 0, nil, errNoMember
}
