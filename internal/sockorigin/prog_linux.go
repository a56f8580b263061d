package sockorigin

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Map symbols of the programs.
const (
	pidsMap    = "pids"
	socksMap   = "socks"
	stacksMap  = "stacks"
	closedMap  = "closed"
	droppedMap = "dropped"
	scratchMap = "scratch"
)

// TCP states of include/net/tcp_states.h.
const (
	tcpSynSent = 2
	tcpClose   = 7
)

// The value of the socks map (keyed by the struct sock address), native
// byte order. Its first keySize bytes, (tgid, 0, stack key), are the key
// of the closed map: not the top words, which hold the leaf's locals too
// and would make a key per call.
const (
	valTGID   = 0  // u32
	valPad    = 4  // u32, zero
	valStack  = 8  // u64 stack key: the stacks map's key
	valTop    = 16 // TopWords × u64
	valTID    = valTop + TopWords*8
	valHow    = valTID + 4
	valTime   = valHow + 4  // u64 CLOCK_MONOTONIC ns
	valCookie = valTime + 8 // u64 socket cookie, set when it enters CLOSE_WAIT
	valSize   = valCookie + 8
	keySize   = valTop // (tgid, 0, stack key): a StackKey
)

// The stack walk. The programs walk the user frame-pointer chain
// themselves instead of calling bpf_get_stackid, which reads each frame
// from user memory (two guarded user reads a frame, about 140 ns a frame
// on the virtual machine this was measured on): one bpf_probe_read_user
// copies the rest of the stack pointer's page into a per-CPU scratch
// buffer (the next page follows when a frame lies in it, up to bufBytes),
// and the frames found there cost no further user access; frames beyond
// are read 16 bytes at a time. Like the kernel's walk (x86), it starts
// with the instruction pointer, follows the saved frame pointers and stops
// at MaxDepth frames, an unreadable frame or a zero return address. The
// frames are hashed as they are found; the stacks map, keyed by the first
// hash, stores a stack once, with the second hash to tell a collision
// (counted as a drop) from the same stack.
//
// Stacks map value and the scratch buffer's tail: the second hash, then
// MaxDepth frames (the instruction pointer, then the return addresses,
// innermost first, a zero after the last when fewer).
const (
	pageBytes     = 4096
	bufBytes      = 2 * pageBytes
	stackValSize  = 8 + MaxDepth*8
	scratchSize   = bufBytes + stackValSize
	scratchFrames = bufBytes + 8
	// outOfBuffer, as the buffer's base, puts every frame outside it
	// (when the big read failed).
	outOfBuffer = math.MinInt64
	hashMul1    = -0x61C8864680B583EB // 0x9E3779B97F4A7C15 as an int64
	hashMul2    = -0x3D4D51C2D82B14B1 // 0xC2B2AE3D27D4EB4F as an int64
)

// Stack frame of the programs: fp-8 the socks key (the struct sock
// address), fp-16 a scratch key or value, fp-24 the accepted fd, fp-32 a
// probe-read word, the socks value below them, then a user frame (saved
// frame pointer, return address), the two running hashes and the user
// stack pointer.
const (
	fpSock    = -8
	fpScratch = -16
	fpFD      = -24
	fpWord    = -32
	fpVal     = -32 - valSize
	fpFrame   = fpVal - 16
	fpH1      = fpFrame - 8
	fpH2      = fpH1 - 8
	fpSP      = fpH2 - 8
	fpLim     = fpSP - 8
)

func val(off int) int16 { return int16(fpVal + off) }

// offsets are the kernel struct members the programs read.
type offsets struct {
	protocol    uint32 // struct sock: sk_protocol (u16)
	regsSP      uint32 // struct pt_regs: the user stack pointer (u64)
	regsFP      uint32 // struct pt_regs: the user frame pointer (u64)
	regsIP      uint32 // struct pt_regs: the user instruction pointer (u64)
	regsSysNr   uint32 // struct pt_regs: the system call number (orig_ax, syscallno)
	sysNrSize   asm.Size
	taskFiles   uint32 // struct task_struct: files
	filesFdt    uint32 // struct files_struct: fdt
	fdtFd       uint32 // struct fdtable: fd
	filePrivate uint32 // struct file: private_data (the struct socket)
	socketSk    uint32 // struct socket: sk
}

func checkOffsets(o offsets) error {
	for _, off := range []uint32{o.protocol, o.regsSP, o.regsFP, o.regsIP, o.regsSysNr, o.taskFiles, o.filesFdt, o.fdtFd, o.filePrivate, o.socketSk} {
		if off > math.MaxInt16 {
			return fmt.Errorf("offset %d beyond int16", off)
		}
	}
	return nil
}

// tcpOnly exits unless the socket in sk (a BTF pointer) is a TCP one.
func tcpOnly(o offsets, sk asm.Register) asm.Instructions {
	return asm.Instructions{
		asm.JEq.Imm(sk, 0, "exit"),
		asm.LoadMem(asm.R2, sk, int16(o.protocol), asm.Half),
		asm.JNE.Imm(asm.R2, unix.IPPROTO_TCP, "exit"),
	}
}

// capture records a socket made in the way in R8 when the current process
// is traced. getSock runs once the process is known to be traced: it
// leaves the struct sock address in R7 (or exits) and must keep R8 and R9.
// slot is the program's own entry of the per-CPU scratch map (a program
// does not nest in itself on one CPU; two programs may).
//
//	tgid = bpf_get_current_pid_tgid() >> 32;
//	if (!bpf_map_lookup_elem(&pids, &tgid)) return 0;
//	sk = getSock();
//	v = {tgid, 0, key, top, tid, how, now, 0};
//	key, h2 = walk(scratch[slot]);   // fills scratch's frames and top
//	if ((s = bpf_map_lookup_elem(&stacks, &key))) { if (s->h2 != h2) goto drop; }
//	else if (bpf_map_update_elem(&stacks, &key, &scratch.h2, BPF_NOEXIST) && err != -EEXIST) goto drop;
//	if (bpf_map_update_elem(&socks, &sk, &v, BPF_ANY)) goto drop;
//	return 0;
//	drop: dropped[0]++;
func capture(o offsets, slot int32, getSock asm.Instructions) asm.Instructions {
	insns := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.RSh.Imm(asm.R0, 32),
		asm.StoreMem(asm.RFP, fpScratch, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(pidsMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpScratch),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
	}
	insns = append(insns, getSock...)
	insns = append(insns,
		asm.StoreMem(asm.RFP, fpSock, asm.R7, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 32),
		asm.StoreMem(asm.RFP, val(valTGID), asm.R1, asm.Word),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, val(valPad), asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, val(valCookie), asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, val(valTID), asm.R9, asm.Word),
		asm.StoreMem(asm.RFP, val(valHow), asm.R8, asm.Word),
	)
	insns = append(insns, walk(o, slot)...)
	return append(insns,
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, val(valTime), asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(socksMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpSock),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(val(0))),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),

		asm.Mov.Imm(asm.R1, 0).WithSymbol("drop"),
		asm.StoreMem(asm.RFP, fpScratch, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(droppedMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpScratch),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label("exit"),
	)
}

// walk fills the socks value's stack key and top words from the current
// thread's user registers and stack, and stores the stack in the stacks
// map when it is new. It may use every register; it jumps to "drop" when
// the stack cannot be stored.
//
// The scratch buffer mirrors the user stack page-wise from the page of
// the stack pointer: the rest of that page is read first (it is present:
// the thread just used it), the next page only when a frame lies in it
// (a whole-page read fails at once where the stack ends: the page after a
// thread's or goroutine's stack may be absent).
//
//	s = scratch[slot]; regs = bpf_task_pt_regs(current);
//	base = regs->sp & ~4095; fp = regs->bp; lim = 4096;
//	if (bpf_probe_read_user(s->buf + (regs->sp & 4095), 4096 - (regs->sp & 4095), regs->sp))
//		base = outOfBuffer;
//	v.top = the TopWords at regs->sp, from s->buf when there, else bpf_probe_read_user;
//	s->frames[0] = regs->ip; h1 = ip * M1; h2 = ip * M2; n = 1;
//	for (; n < MaxDepth; n++) {
//		off = fp - base;
//		if (off <= bufBytes-16 && off+16 > lim && !bpf_probe_read_user(s->buf + lim, 4096, base + lim))
//			lim += 4096; // and look again
//		if (off <= bufBytes-16 && off+16 <= lim) {next, ret} = s->buf[off:];
//		else if (!fp || bpf_probe_read_user(&{next, ret}, 16, fp)) break;
//		if (!ret) break;
//		s->frames[n] = ret; h1 = (h1 ^ ret) * M1; h2 = (h2 + ret) * M2;
//		fp = next;
//	}
//	if (n < MaxDepth) s->frames[n] = 0;
//	v.key = h1 ^ n; s->h2 = h2;
func walk(o offsets, slot int32) asm.Instructions {
	frame := func(idx asm.Register, off int16, src asm.Register) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, idx),
			asm.LSh.Imm(asm.R1, 3),
			asm.And.Imm(asm.R1, MaxDepth*8-1),
			asm.Add.Reg(asm.R1, asm.R6),
			asm.StoreMem(asm.R1, scratchFrames+off, src, asm.DWord),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Imm(asm.R1, slot),
		asm.StoreMem(asm.RFP, fpScratch, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(scratchMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpScratch),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.Mov.Reg(asm.R6, asm.R0), // R6: the scratch buffer

		asm.FnGetCurrentTaskBtf.Call(),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.FnTaskPtRegs.Call(),
		asm.LoadMem(asm.R7, asm.R0, int16(o.regsSP), asm.DWord),
		asm.LoadMem(asm.R8, asm.R0, int16(o.regsFP), asm.DWord), // R8: the frame pointer
		asm.LoadMem(asm.R1, asm.R0, int16(o.regsIP), asm.DWord),
		asm.StoreMem(asm.R6, scratchFrames, asm.R1, asm.DWord),
		asm.LoadImm(asm.R2, hashMul1, asm.DWord),
		asm.Mul.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.RFP, fpH1, asm.R2, asm.DWord),
		asm.LoadImm(asm.R2, hashMul2, asm.DWord),
		asm.Mul.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.RFP, fpH2, asm.R2, asm.DWord),
		asm.StoreMem(asm.RFP, fpSP, asm.R7, asm.DWord),
		asm.Mov.Imm(asm.R1, pageBytes),
		asm.StoreMem(asm.RFP, fpLim, asm.R1, asm.DWord),
	}
	insns = append(insns,
		asm.Mov.Reg(asm.R9, asm.R7),
		asm.And.Imm(asm.R9, pageBytes-1), // R9: the stack pointer's offset in its page
		asm.Sub.Reg(asm.R7, asm.R9),      // R7: the buffer's base, the page's start
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Add.Reg(asm.R1, asm.R9),
		asm.Mov.Imm(asm.R2, pageBytes),
		asm.Sub.Reg(asm.R2, asm.R9),
		asm.LoadMem(asm.R3, asm.RFP, fpSP, asm.DWord),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, "nobuf"),
		asm.JGT.Imm(asm.R9, pageBytes-TopWords*8, "top"),
		asm.Add.Reg(asm.R9, asm.R6),
	)
	for i := range TopWords {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R9, int16(8*i), asm.DWord),
			asm.StoreMem(asm.RFP, val(valTop+8*i), asm.R1, asm.DWord),
		)
	}
	insns = append(insns,
		asm.Ja.Label("walk"),
		// The stack pointer's page could not be read: every frame by itself.
		asm.LoadImm(asm.R7, outOfBuffer, asm.DWord).WithSymbol("nobuf"),
		asm.Mov.Reg(asm.R1, asm.RFP).WithSymbol("top"),
		asm.Add.Imm(asm.R1, int32(val(valTop))),
		asm.Mov.Imm(asm.R2, TopWords*8),
		asm.LoadMem(asm.R3, asm.RFP, fpSP, asm.DWord),
		asm.FnProbeReadUser.Call(), // zero-fills on a fault

		asm.Mov.Imm(asm.R9, 1).WithSymbol("walk"), // R9: frames so far
		asm.JGE.Imm(asm.R9, MaxDepth, "walked").WithSymbol("frame"),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Sub.Reg(asm.R2, asm.R7),
		asm.JGT.Imm(asm.R2, bufBytes-16, "read"),
		asm.LoadMem(asm.R1, asm.RFP, fpLim, asm.DWord),
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.Add.Imm(asm.R3, 16),
		asm.JLE.Reg(asm.R3, asm.R1, "inbuf"),
		// The frame is in a page not read yet: read it.
		asm.JGE.Imm(asm.R1, bufBytes, "read"),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Reg(asm.R3, asm.R1),
		asm.Add.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, pageBytes),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, "read"),
		asm.LoadMem(asm.R1, asm.RFP, fpLim, asm.DWord),
		asm.Add.Imm(asm.R1, pageBytes),
		asm.StoreMem(asm.RFP, fpLim, asm.R1, asm.DWord),
		asm.Ja.Label("frame"),
	)
	insns = append(insns,
		asm.Add.Reg(asm.R2, asm.R6).WithSymbol("inbuf"),
		asm.LoadMem(asm.R3, asm.R2, 0, asm.DWord), // saved frame pointer
		asm.LoadMem(asm.R4, asm.R2, 8, asm.DWord), // return address
		asm.Ja.Label("got"),
		asm.JEq.Imm(asm.R8, 0, "walked").WithSymbol("read"),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpFrame),
		asm.Mov.Imm(asm.R2, 16),
		asm.Mov.Reg(asm.R3, asm.R8),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, "walked"),
	)
	insns = append(insns,
		asm.LoadMem(asm.R3, asm.RFP, fpFrame, asm.DWord),
		asm.LoadMem(asm.R4, asm.RFP, fpFrame+8, asm.DWord),
		asm.JEq.Imm(asm.R4, 0, "walked").WithSymbol("got"),
	)
	insns = append(insns, frame(asm.R9, 0, asm.R4)...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, fpH1, asm.DWord),
		asm.Xor.Reg(asm.R1, asm.R4),
		asm.LoadImm(asm.R2, hashMul1, asm.DWord),
		asm.Mul.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.RFP, fpH1, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, fpH2, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R4),
		asm.LoadImm(asm.R2, hashMul2, asm.DWord),
		asm.Mul.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.RFP, fpH2, asm.R1, asm.DWord),
		asm.Add.Imm(asm.R9, 1),
		asm.Mov.Reg(asm.R8, asm.R3),
		asm.Ja.Label("frame"),

		asm.JGE.Imm(asm.R9, MaxDepth, "hashed").WithSymbol("walked"),
		asm.Mov.Imm(asm.R4, 0),
	)
	insns = append(insns, frame(asm.R9, 0, asm.R4)...)
	return append(insns,
		asm.LoadMem(asm.R1, asm.RFP, fpH1, asm.DWord).WithSymbol("hashed"),
		asm.Xor.Reg(asm.R1, asm.R9),
		asm.StoreMem(asm.RFP, val(valStack), asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, fpH2, asm.DWord),
		asm.StoreMem(asm.R6, bufBytes, asm.R1, asm.DWord),

		asm.LoadMapPtr(asm.R1, 0).WithReference(stacksMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(val(valStack))),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "newstack"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.LoadMem(asm.R2, asm.R6, bufBytes, asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R2, "drop"), // a different stack with the same key
		asm.Ja.Label("stored"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(stacksMap).WithSymbol("newstack"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(val(valStack))),
		asm.Mov.Reg(asm.R3, asm.R6),
		asm.Add.Imm(asm.R3, bufBytes),
		asm.Mov.Imm(asm.R4, 1), // BPF_NOEXIST
		asm.FnMapUpdateElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "stored"),
		asm.JNE.Imm(asm.R0, -int32(unix.EEXIST), "drop"), // full; EEXIST: another CPU stored it first
		asm.Mov.Reg(asm.R0, asm.R0).WithSymbol("stored"),
	)
}

// lookupSock looks the socket in R7 up in socks, leaving the value in R9
// or exiting.
func lookupSock() asm.Instructions {
	return asm.Instructions{
		asm.JEq.Imm(asm.R7, 0, "exit"),
		asm.StoreMem(asm.RFP, fpSock, asm.R7, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(socksMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpSock),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Reg(asm.R9, asm.R0),
	}
}

// stateProgram is the tp_btf/inet_sock_set_state program; its arguments
// are (const struct sock *sk, int oldstate, int newstate).
//
//	if (new == TCP_CLOSE) goto closed;
//	if (new != TCP_SYN_SENT || old != TCP_CLOSE) return 0;   // not a connect()
//	if (!sk || sk->sk_protocol != IPPROTO_TCP) return 0;
//	capture(sk, Connected);
//	closed:
//	if (!(v = bpf_map_lookup_elem(&socks, &sk))) return 0;
//	c = bpf_map_lookup_elem(&closed, v);   // v starts with (tgid, 0, stack key)
//	if (c) *c += 1; else bpf_map_update_elem(&closed, v, &one, BPF_NOEXIST);
//	bpf_map_delete_elem(&socks, &sk);
func stateProgram(o offsets) (asm.Instructions, error) {
	if err := checkOffsets(o); err != nil {
		return nil, err
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord),  // oldstate
		asm.LoadMem(asm.R3, asm.R6, 16, asm.DWord), // newstate
		asm.JEq.Imm(asm.R3, tcpClose, "closed"),
		asm.JNE.Imm(asm.R3, tcpSynSent, "exit"),
		asm.JNE.Imm(asm.R2, tcpClose, "exit"),
		asm.Mov.Imm(asm.R8, Connected),
	}
	insns = append(insns, capture(o, 1, append(asm.Instructions{
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord),
	}, tcpOnly(o, asm.R7)...))...)

	insns = append(insns, asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord).WithSymbol("closed"))
	insns = append(insns, lookupSock()...)
	return append(insns,
		asm.LoadMapPtr(asm.R1, 0).WithReference(closedMap),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "count"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreMem(asm.RFP, fpScratch, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(closedMap),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, fpScratch),
		asm.Mov.Imm(asm.R4, 1), // BPF_NOEXIST
		asm.FnMapUpdateElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "forget"),
		// Another CPU added the key first: count on it.
		asm.LoadMapPtr(asm.R1, 0).WithReference(closedMap),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "forget"),
		asm.Mov.Imm(asm.R1, 1).WithSymbol("count"),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),

		asm.LoadMapPtr(asm.R1, 0).WithReference(socksMap).WithSymbol("forget"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpSock),
		asm.FnMapDeleteElem.Call(),

		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	), nil
}

// chase replaces the kernel address in R3 by the pointer at R3+off, read
// with bpf_probe_read_kernel, exiting on a fault or a NULL.
func chase(off uint32) asm.Instructions {
	return asm.Instructions{
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpWord),
		asm.Mov.Imm(asm.R2, 8),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(asm.R3, asm.RFP, fpWord, asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "exit"),
	}
}

// acceptProgram is the tp_btf/sys_exit (raw_syscalls) program: when
// accept or accept4 returns a file descriptor to a traced process, the
// socket behind it is recorded as Accepted. Its arguments are (struct
// pt_regs *regs, long ret).
//
//	if (ret < 0 || (regs->orig_ax != __NR_accept4 && regs->orig_ax != __NR_accept)) return 0;
//	capture(current->files->fdt->fd[ret]->private_data->sk, Accepted);
func acceptProgram(o offsets) (asm.Instructions, error) {
	if err := checkOffsets(o); err != nil {
		return nil, err
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord), // ret
		asm.JSLT.Imm(asm.R2, 0, "exit"),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord), // regs
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.LoadMem(asm.R3, asm.R1, int16(o.regsSysNr), o.sysNrSize),
		asm.JEq.Imm(asm.R3, sysAccept4, "accepted"),
		asm.JNE.Imm(asm.R3, sysAccept, "exit"),
		asm.StoreMem(asm.RFP, fpFD, asm.R2, asm.DWord).WithSymbol("accepted"),
		asm.Mov.Imm(asm.R8, Accepted),
	}
	getSock := asm.Instructions{
		asm.FnGetCurrentTaskBtf.Call(),
		asm.Mov.Reg(asm.R3, asm.R0),
	}
	getSock = append(getSock, chase(o.taskFiles)...)
	getSock = append(getSock, chase(o.filesFdt)...)
	getSock = append(getSock, chase(o.fdtFd)...)
	getSock = append(getSock,
		asm.LoadMem(asm.R2, asm.RFP, fpFD, asm.DWord),
		asm.JGT.Imm(asm.R2, 1<<30, "exit"),
		asm.LSh.Imm(asm.R2, 3),
		asm.Add.Reg(asm.R3, asm.R2),
	)
	getSock = append(getSock, chase(0)...)             // struct file *
	getSock = append(getSock, chase(o.filePrivate)...) // struct socket *
	getSock = append(getSock, chase(o.socketSk)...)    // struct sock *
	getSock = append(getSock,
		asm.Mov.Reg(asm.R7, asm.R3),
		// sk_protocol, read the same way: R7 is a plain number here.
		asm.Add.Imm(asm.R3, int32(o.protocol)),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpWord),
		asm.Mov.Imm(asm.R2, 2),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(asm.R2, asm.RFP, fpWord, asm.Half),
		asm.JNE.Imm(asm.R2, unix.IPPROTO_TCP, "exit"),
	)
	insns = append(insns, capture(o, 0, getSock)...)
	return append(insns,
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	), nil
}

// cookieProgram is the iter/tcp program that gives recorded sockets their
// cookie: the accept hook reaches a socket through the fd table as a plain
// address, which bpf_get_socket_cookie does not take, while the iterator
// hands it the socket as a BTF pointer. Its context is struct
// bpf_iter__tcp {meta, sk_common, uid}.
//
//	if (!ctx->sk_common || !(v = bpf_map_lookup_elem(&socks, &ctx->sk_common))) return 0;
//	v->cookie = bpf_get_socket_cookie(ctx->sk_common);
func cookieProgram() asm.Instructions {
	insns := asm.Instructions{asm.LoadMem(asm.R7, asm.R1, 8, asm.DWord)}
	insns = append(insns, lookupSock()...)
	return append(insns,
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.R9, valCookie, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
}
