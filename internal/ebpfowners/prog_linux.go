package ebpfowners

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
)

const (
	sIFMT   = 0o170000 // S_IFMT, include/uapi/linux/stat.h
	sIFSOCK = 0o140000 // S_IFSOCK
)

// wantedMapName is the symbol by which the filtered program refers to its
// bitmap of wanted inodes.
const wantedMapName = "wanted_inodes"

// The wanted-inode filter is a bitmap of filterBits bits (1 MiB), an array
// map of u64 words that user space writes through mmap: inode i is wanted
// when bit i mod filterBits is set. It can say yes to an unwanted inode (a
// false positive, at the rate of set bits), never no to a wanted one, so
// emitted records are checked again in Go. Socket inodes come from a
// sequential counter, so a window of 2^23 consecutive ones never collides.
const (
	filterBits  = 1 << 23
	filterWords = filterBits / 64
)

// maxInsnOff is the largest offset a load instruction can carry (int16).
const maxInsnOff = math.MaxInt16

// progOptions choose a program variant.
type progOptions struct {
	// filter tests each socket inode against the bitmap wantedMapName
	// and emits only those whose bit is set.
	filter bool
	// maxOff is the largest offset put into a load instruction; larger ones
	// are added to a copy of the pointer register first. Zero means
	// maxInsnOff; tests lower it to exercise the add path.
	maxOff uint32
}

func sizeOf(f field) (asm.Size, error) {
	switch f.size {
	case 1:
		return asm.Byte, nil
	case 2:
		return asm.Half, nil
	case 4:
		return asm.Word, nil
	case 8:
		return asm.DWord, nil
	}
	return asm.InvalidSize, fmt.Errorf("field of %d bytes: not a loadable width", f.size)
}

// builder accumulates instructions and the first error.
type builder struct {
	insns  asm.Instructions
	maxOff uint32
	err    error
}

func (b *builder) add(insns ...asm.Instruction) { b.insns = append(b.insns, insns...) }

// load emits dst = *(f.size *)(base + f.off) through a BTF pointer in base.
// base is left unchanged unless it is dst. An offset beyond maxOff is added
// to dst first (pointer arithmetic on a non-NULL PTR_TO_BTF_ID is allowed,
// and the verifier checks reg offset + insn offset against the BTF member).
func (b *builder) load(dst, base asm.Register, f field) {
	size, err := sizeOf(f)
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return
	}
	if f.off <= b.maxOff {
		b.add(asm.LoadMem(dst, base, int16(f.off), size))
		return
	}
	if f.off > math.MaxInt32 {
		if b.err == nil {
			b.err = fmt.Errorf("offset %d beyond int32", f.off)
		}
		return
	}
	if dst != base {
		b.add(asm.Mov.Reg(dst, base))
	}
	b.add(
		asm.Add.Imm(dst, int32(f.off)),
		asm.LoadMem(dst, dst, 0, size),
	)
}

// loadCtx emits dst = ctx->field. Context pointers cannot be moved, so the
// offset must fit the instruction (the context struct is 32 bytes).
func (b *builder) loadCtx(dst, ctx asm.Register, f field) {
	size, err := sizeOf(f)
	if err == nil && f.off > maxInsnOff {
		err = fmt.Errorf("context offset %d beyond int16", f.off)
	}
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return
	}
	b.add(asm.LoadMem(dst, ctx, int16(f.off), size))
}

// buildProgram returns the task_file program for the layout l:
//
//	task = ctx->task; file = ctx->file;        // either may be NULL
//	if (!task || !file || task->pid != task->tgid) return 0;
//	inode = file->f_inode;
//	if (!inode || (inode->i_mode & S_IFMT) != S_IFSOCK) return 0;
//	rec = {task->tgid, ctx->fd, inode->i_ino};
//	[if (!(wanted[ino % filterBits / 64] >> (ino % 64) & 1)) return 0;]
//	bpf_seq_write(ctx->meta->seq, &rec, 16);
//	return 0;
//
// The record lives at fp-16: tgid at fp-16, fd at fp-12, ino at fp-8; the
// bitmap key at fp-20.
func buildProgram(l layout, o progOptions) (asm.Instructions, error) {
	b := &builder{maxOff: o.maxOff}
	if b.maxOff == 0 || b.maxOff > maxInsnOff {
		b.maxOff = maxInsnOff
	}
	const (
		ctx  = asm.R6
		task = asm.R7
		file = asm.R8
		exit = "exit"
	)
	b.add(asm.Mov.Reg(ctx, asm.R1))
	b.loadCtx(task, ctx, l.ctxTask)
	b.add(asm.JEq.Imm(task, 0, exit))
	b.loadCtx(file, ctx, l.ctxFile)
	b.add(asm.JEq.Imm(file, 0, exit))

	// Thread-group leaders only, as /proc/PID/fd.
	b.load(asm.R2, task, l.taskPID)
	b.load(asm.R3, task, l.taskTGID)
	b.add(asm.JNE.Reg(asm.R2, asm.R3, exit))

	b.load(asm.R1, file, l.fileInode)
	b.add(asm.JEq.Imm(asm.R1, 0, exit))
	b.load(asm.R2, asm.R1, l.inodeMode)
	b.add(
		asm.And.Imm(asm.R2, sIFMT),
		asm.JNE.Imm(asm.R2, sIFSOCK, exit),
	)
	b.load(asm.R3, asm.R1, l.inodeIno)
	b.add(asm.StoreMem(asm.RFP, -8, asm.R3, asm.DWord))

	if o.filter {
		// key = (ino mod filterBits) / 64 at fp-20; word = wanted[key];
		// if !(word >> (ino % 64) & 1) return 0.
		b.add(
			asm.Mov.Reg(asm.R2, asm.R3),
			asm.And.Imm(asm.R2, filterBits-1),
			asm.RSh.Imm(asm.R2, 6),
			asm.StoreMem(asm.RFP, -20, asm.R2, asm.Word),
			asm.LoadMapPtr(asm.R1, 0).WithReference(wantedMapName),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -20),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, exit),
			asm.LoadMem(asm.R0, asm.R0, 0, asm.DWord),
			asm.LoadMem(asm.R2, asm.RFP, -8, asm.DWord),
			asm.And.Imm(asm.R2, 63),
			asm.RSh.Reg(asm.R0, asm.R2),
			asm.And.Imm(asm.R0, 1),
			asm.JEq.Imm(asm.R0, 0, exit),
		)
	}

	b.load(asm.R2, task, l.taskTGID)
	b.add(asm.StoreMem(asm.RFP, -16, asm.R2, asm.Word))
	b.loadCtx(asm.R2, ctx, l.ctxFD)
	b.add(asm.StoreMem(asm.RFP, -12, asm.R2, asm.Word))

	b.loadCtx(asm.R1, ctx, l.ctxMeta)
	b.load(asm.R1, asm.R1, l.metaSeq)
	b.add(
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -RecordSize),
		asm.Mov.Imm(asm.R3, RecordSize),
		asm.FnSeqWrite.Call(),
	)
	b.add(
		asm.Mov.Imm(asm.R0, 0).WithSymbol(exit),
		asm.Return(),
	)
	if b.err != nil {
		return nil, b.err
	}
	return b.insns, nil
}
