package ebpfowners

import (
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/closewait/closewait/internal/btflayout"
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

// memberField finds the named member of t (a struct or union), descending
// into anonymous structs and unions (the context struct wraps its pointers
// in __bpf_md_ptr unions), and returns its byte offset from the start of t
// and its size, which must be a loadable width.
func memberField(t btf.Type, name string) (field, error) {
	f, err := btflayout.Member(t, name)
	if err != nil {
		return field{}, err
	}
	switch f.Size {
	case 1, 2, 4, 8:
	default:
		return field{}, fmt.Errorf("%d bytes: not a loadable width", f.Size)
	}
	return field{off: f.Off, size: f.Size}, nil
}
