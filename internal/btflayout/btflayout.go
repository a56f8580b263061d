// Package btflayout finds where kernel struct members sit, from the
// kernel's BTF, for eBPF programs written instruction by instruction (which
// get no CO-RE relocations): the eBPF owner iterator and the socket change
// feed patch these offsets and widths into their loads.
package btflayout

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// Field is where a struct member sits: byte offset from the start of the
// outer struct and size in bytes.
type Field struct {
	Off, Size uint32
}

// End is the offset of the first byte after the member.
func (f Field) End() uint32 { return f.Off + f.Size }

// ErrNoMember reports that a struct or union has no member of that name.
var ErrNoMember = errors.New("no such member")

// Member finds t.path[0].path[1]..., descending at each step into anonymous
// structs and unions (the kernel wraps many members in them), and returns
// its offset from the start of t and its size. Bitfields and members not
// on a byte boundary are errors.
func Member(t btf.Type, path ...string) (Field, error) {
	var off btf.Bits
	for _, name := range path {
		o, typ, err := findMember(t, name, off)
		if err != nil {
			return Field{}, err
		}
		off, t = o, typ
	}
	if off%8 != 0 {
		return Field{}, fmt.Errorf("bit offset %d is not byte aligned", off)
	}
	size, err := btf.Sizeof(t)
	if err != nil {
		return Field{}, fmt.Errorf("size: %w", err)
	}
	return Field{Off: uint32(off / 8), Size: uint32(size)}, nil
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
		return 0, nil, fmt.Errorf("%s is not a struct or union: %w", t, ErrNoMember)
	}
	for _, m := range members {
		if m.Name == name {
			if m.BitfieldSize != 0 {
				return 0, nil, fmt.Errorf("%s is a bitfield", name)
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
		if !errors.Is(err, ErrNoMember) {
			return 0, nil, err
		}
	}
	return 0, nil, fmt.Errorf("%s: %w", name, ErrNoMember)
}
