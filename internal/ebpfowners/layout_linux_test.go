package ebpfowners

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/closewait/closewait/internal/cwtest"
)

// These tests need no privileges.

func TestMemberField(t *testing.T) {
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	u16 := &btf.Int{Name: "unsigned short", Size: 2}
	task := &btf.Struct{Name: "task_struct", Size: 64}
	ptr := &btf.Pointer{Target: task}
	blob := &btf.Array{Type: u32, Nelems: 4}
	ctx := &btf.Struct{Name: "bpf_iter__task_file", Size: 48, Members: []btf.Member{
		{Name: "", Offset: 64, Type: &btf.Union{Size: 8, Members: []btf.Member{{Name: "task", Type: ptr}}}},
		{Name: "fd", Offset: 128, Type: &btf.Typedef{Name: "u32", Type: u32}},
		{Name: "", Offset: 192, Type: &btf.Struct{Size: 8, Members: []btf.Member{
			{Name: "mode", Offset: 16, Type: u16},
		}}},
		{Name: "bits", Offset: 256, Type: u32, BitfieldSize: 3},
		{Name: "blob", Offset: 256, Type: blob},
		{Name: "odd", Offset: 300, Type: u16},
	}}
	tests := []struct {
		member string
		want   field
		err    string
	}{
		{member: "task", want: field{off: 8, size: 8}},
		{member: "fd", want: field{off: 16, size: 4}},
		{member: "mode", want: field{off: 26, size: 2}},
		{member: "bits", err: "bitfield"},
		{member: "blob", err: "not a loadable width"},
		{member: "odd", err: "not byte aligned"},
		{member: "nope", err: "no such member"},
	}
	for _, tt := range tests {
		t.Run(tt.member, func(t *testing.T) {
			got, err := memberField(ctx, tt.member)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestKernelLayout reads this kernel's BTF (world-readable, no capability
// needed) and checks the layout against what the program relies on.
func TestKernelLayout(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	cwtest.SkipIfNotSupported(t, err, btf.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	l, err := kernelLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("layout: %+v", l)
	// The context is the iterator function's arguments, one u64 slot each.
	if l.ctxMeta != (field{0, 8}) || l.ctxTask != (field{8, 8}) || l.ctxFile != (field{24, 8}) || l.ctxFD.off != 16 {
		t.Errorf("bpf_iter__task_file layout %+v %+v %+v %+v", l.ctxMeta, l.ctxTask, l.ctxFD, l.ctxFile)
	}
	if l.inodeMode.size != 2 {
		t.Errorf("inode.i_mode is %d bytes, want 2 (umode_t)", l.inodeMode.size)
	}
	if l.taskTGID.size != 4 {
		t.Errorf("task_struct.tgid is %d bytes, want 4 (pid_t)", l.taskTGID.size)
	}
	if _, err := buildProgram(l, progOptions{filter: true}); err != nil {
		t.Error(err)
	}
}

// TestBuildProgramLargeOffsets checks that offsets beyond int16 go through
// an add to a copy of the pointer register, never into a load's offset.
func TestBuildProgramLargeOffsets(t *testing.T) {
	l := layout{
		ctxMeta: field{0, 8}, ctxTask: field{8, 8}, ctxFD: field{16, 4}, ctxFile: field{24, 8},
		metaSeq:   field{0, 8},
		taskPID:   field{40000, 4},
		taskTGID:  field{40004, 4},
		fileInode: field{32, 8},
		inodeMode: field{0, 2},
		inodeIno:  field{1 << 20, 8},
	}
	insns, err := buildProgram(l, progOptions{})
	if err != nil {
		t.Fatal(err)
	}
	adds := map[int64]bool{}
	for i, ins := range insns {
		if ins.OpCode.Class().IsLoad() && ins.OpCode.Mode() == asm.MemMode {
			if ins.Offset < 0 { // Offset is an int16: a large offset must have gone through an add
				t.Errorf("insn %d %v: offset out of range", i, ins)
			}
			if ins.Offset == 0 && i > 0 && insns[i-1].OpCode.ALUOp() == asm.Add && insns[i-1].Dst == ins.Src {
				adds[insns[i-1].Constant] = true
			}
		}
	}
	for _, off := range []int64{40000, 40004, 1 << 20} {
		if !adds[off] {
			t.Errorf("no add of %d before a load:\n%v", off, insns)
		}
	}
	if t.Failed() {
		return
	}

	l.ctxFD.off = 40000
	if _, err := buildProgram(l, progOptions{}); err == nil || !strings.Contains(err.Error(), "context offset") {
		t.Errorf("context offset beyond int16: err = %v", err)
	}
}

// TestBuildProgramShape checks the record the program writes.
func TestBuildProgramShape(t *testing.T) {
	l := layout{
		ctxMeta: field{0, 8}, ctxTask: field{8, 8}, ctxFD: field{16, 4}, ctxFile: field{24, 8},
		metaSeq: field{0, 8}, taskPID: field{100, 4}, taskTGID: field{104, 4},
		fileInode: field{32, 8}, inodeMode: field{0, 2}, inodeIno: field{64, 8},
	}
	for _, filter := range []bool{false, true} {
		insns, err := buildProgram(l, progOptions{filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		stores := map[int16]asm.Size{}
		calls := []asm.BuiltinFunc{}
		for _, ins := range insns {
			if ins.OpCode.Class().IsStore() && ins.Dst == asm.RFP {
				stores[ins.Offset] = ins.OpCode.Size()
			}
			if ins.IsBuiltinCall() {
				calls = append(calls, asm.BuiltinFunc(ins.Constant))
			}
		}
		want := map[int16]asm.Size{-16: asm.Word, -12: asm.Word, -8: asm.DWord}
		if filter {
			want[-20] = asm.Word // bitmap key
		}
		if len(stores) != len(want) {
			t.Errorf("filter=%v: stores %v, want %v", filter, stores, want)
		}
		for off, sz := range want {
			if stores[off] != sz {
				t.Errorf("filter=%v: store at fp%d is %v, want %v", filter, off, stores[off], sz)
			}
		}
		wantCalls := []asm.BuiltinFunc{asm.FnSeqWrite}
		if filter {
			wantCalls = []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnSeqWrite}
		}
		if len(calls) != len(wantCalls) || calls[len(calls)-1] != asm.FnSeqWrite || calls[0] != wantCalls[0] {
			t.Errorf("filter=%v: calls %v, want %v", filter, calls, wantCalls)
		}
		t.Logf("filter=%v: %d instructions", filter, len(insns))
	}
}
