package ebpfowners

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// field is where a struct member sits: byte offset from the start of the
// outer struct and width in bytes, both from BTF.
type field struct {
	off  uint32
	size uint32
}

// layout holds every kernel struct member the program reads.
type layout struct {
	// struct bpf_iter__task_file, include/linux/bpf.h (DEFINE_BPF_ITER_FUNC(task_file, ...)).
	ctxMeta, ctxTask, ctxFD, ctxFile field
	// struct bpf_iter_meta, include/linux/bpf.h.
	metaSeq field
	// struct task_struct, include/linux/sched.h.
	taskPID, taskTGID field
	// struct file, include/linux/fs.h.
	fileInode field
	// struct inode, include/linux/fs.h.
	inodeMode, inodeIno field
}

// kernelLayout reads the layout from kernel BTF.
func kernelLayout(spec *btf.Spec) (layout, error) {
	var l layout
	want := []struct {
		strct, member string
		dst           *field
		ptr           bool // must be a pointer (8 bytes)
	}{
		{"bpf_iter__task_file", "meta", &l.ctxMeta, true},
		{"bpf_iter__task_file", "task", &l.ctxTask, true},
		{"bpf_iter__task_file", "fd", &l.ctxFD, false},
		{"bpf_iter__task_file", "file", &l.ctxFile, true},
		{"bpf_iter_meta", "seq", &l.metaSeq, true},
		{"task_struct", "pid", &l.taskPID, false},
		{"task_struct", "tgid", &l.taskTGID, false},
		{"file", "f_inode", &l.fileInode, true},
		{"inode", "i_mode", &l.inodeMode, false},
		{"inode", "i_ino", &l.inodeIno, false},
	}
	structs := map[string]*btf.Struct{}
	for _, w := range want {
		s := structs[w.strct]
		if s == nil {
			if err := spec.TypeByName(w.strct, &s); err != nil {
				return layout{}, fmt.Errorf("btf struct %s: %w", w.strct, err)
			}
			structs[w.strct] = s
		}
		f, err := memberField(s, w.member)
		if err != nil {
			return layout{}, fmt.Errorf("btf %s.%s: %w", w.strct, w.member, err)
		}
		if w.ptr && f.size != 8 {
			return layout{}, fmt.Errorf("btf %s.%s: pointer of %d bytes, want 8", w.strct, w.member, f.size)
		}
		*w.dst = f
	}
	if l.taskPID.size != l.taskTGID.size {
		return layout{}, fmt.Errorf("btf task_struct: pid is %d bytes, tgid %d", l.taskPID.size, l.taskTGID.size)
	}
	return l, nil
}

var errNoMember = errors.New("no such member")

// memberField finds the named member of t (a struct or union), descending
// into anonymous structs and unions (the context struct wraps its pointers
// in __bpf_md_ptr unions), and returns its byte offset from the start of t
// and its size.
func memberField(t btf.Type, name string) (field, error) {
	off, typ, err := findMember(t, name, 0)
	if err != nil {
		return field{}, err
	}
	if off%8 != 0 {
		return field{}, fmt.Errorf("bit offset %d is not byte aligned", off)
	}
	size, err := btf.Sizeof(typ)
	if err != nil {
		return field{}, fmt.Errorf("size: %w", err)
	}
	switch size {
	case 1, 2, 4, 8:
	default:
		return field{}, fmt.Errorf("%d bytes: not a loadable width", size)
	}
	return field{off: uint32(off / 8), size: uint32(size)}, nil
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
				return 0, nil, fmt.Errorf("member is a bitfield")
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
