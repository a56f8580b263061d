package sockorigin

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Map symbols of the programs.
const (
	pidsMap     = "pids"
	keysMap     = "keys"
	recordsMap  = "records"
	stacksMap   = "stacks"
	closedMap   = "closed"
	droppedMap  = "dropped"
	nslotsMap   = "nslots"
	slotKeysMap = "slotkeys"
	scratchMap  = "scratch"
)

// acceptSlot is the accept program's scratch entry (the state program has
// 1, the cookie program 2).
const acceptSlot = 0

// TCP states of include/net/tcp_states.h.
const (
	tcpSynSent = 2
	tcpClose   = 7
)

// A socket's record in the records map, native byte order. The stack is named by (tgid, stack key), not the top words,
// which hold the leaf's locals too and would make a key per call.
const (
	valTGID   = 0  // u32
	valSlot   = 4  // u32, the stack's slot in the closed counts
	valStack  = 8  // u64 stack key, the first hash
	valTop    = 16 // TopWords × u64
	valTID    = valTop + TopWords*8
	valHow    = valTID + 4
	valTime   = valHow + 4  // u64 jiffies (see clockProgram)
	valCookie = valTime + 8 // u64 socket cookie, set when it enters CLOSE_WAIT
	valSize   = valCookie + 8
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
// The stacks map is keyed by (tgid, 0, first hash), a StackKey. Its value,
// also in the scratch buffer after the stack copy: the second hash, the
// stack's slot in the closed counts (u32, then 4 zero bytes), then
// MaxDepth frames (the instruction pointer, then the return addresses,
// innermost first, a zero after the last when fewer). After it, each CPU
// keeps a direct-mapped cache of cacheEntries stacks it has stored or
// found (first hash, second hash, tgid, slot), so that a repeated stack
// costs no map lookup.
const (
	pageBytes      = 4096
	bufBytes       = 2 * pageBytes
	stackValSize   = 16 + MaxDepth*8 // second hash, slot, 0, frames
	scratchFrames  = bufBytes + 16
	scratchCache   = bufBytes + stackValSize
	cacheEntries   = 16
	cacheEntrySize = 24 // first hash, second hash, tgid, slot
	scratchSize    = scratchCache + cacheEntries*cacheEntrySize
	// outOfBuffer, as the buffer's base, puts every frame outside it
	// (when the big read failed).
	outOfBuffer = math.MinInt64
	hashMul1    = -0x61C8864680B583EB // 0x9E3779B97F4A7C15 as an int64
	hashMul2    = -0x3D4D51C2D82B14B1 // 0xC2B2AE3D27D4EB4F as an int64
)

// The recorded sockets are a set-associative table in two array maps
// (whose lookups the verifier inlines: no helper call, no lock, no
// allocation): a socket's set is a hash of its struct sock address; the
// keys map holds each set's setWays socket addresses in one cache line
// (the map is mmapable, so its values are page-aligned), the records map
// the sets' records, way by way. A way is claimed with a compare-and-swap
// of 0 to the address with its low bit set (busy: no socket address is
// odd), its record written, then the address stored with an atomic
// exchange (a full barrier): a socket entering TCP_CLOSE, which compares
// its set's addresses with its own, finds only complete records, and
// frees the way with a compare-and-swap back to 0. A socket whose address
// is still in its set (a close that was not seen: a socket closed between
// accept() and the program's run) takes that way over. A creation whose
// set has no free way is dropped.
const (
	setWays  = 16
	setBits  = 14
	numSets  = 1 << setBits
	setBytes = setWays * 8
	recsSize = setWays * valSize
	busyBit  = 1
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
	fpKey     = fpLim - 16 // a stacks map key
	fpRegs    = fpKey - 8  // the user registers, when the hook has them
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
	// The BTF ids of bpf_rdonly_cast (0 when the kernel has no such
	// kfunc) and of the types the accept program casts to: struct
	// llist_node (a pointer at offset 0), struct file and struct socket.
	rdonlyCast, llistNode, file, socket btf.TypeID
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
//	if (!(pids[tgid / 64] & (1 << tgid % 64))) return 0;
//	sk = getSock();
//	v = {tgid, 0, key, top, tid, how, now, 0};
//	h1, h2 = walk(scratch[slot]);   // fills scratch's frames and top
//	key = {tgid, 0, h1};
//	if (this CPU's cache has (h1, h2, tgid)) v.slot = its slot;
//	else if ((s = bpf_map_lookup_elem(&stacks, &key))) { if (s->h2 != h2) goto drop; v.slot = s->slot; }
//	else { v.slot = nslots++; slotkeys[v.slot] = key;
//		bpf_map_update_elem(&stacks, &key, &scratch.h2, BPF_NOEXIST) or, on EEXIST, look it up as above }
//	set = hash(sk); keys = &keys[set];
//	way = the way of keys holding sk, else the first free way, else goto drop;
//	claim it: cmpxchg(&keys[way], sk or 0, sk|busy) or goto drop;
//	records[set][way] = v; xchg(&keys[way], sk);
//	return 0;
//	drop: dropped[0]++;
func capture(o offsets, slot int32, getSock asm.Instructions) asm.Instructions {
	insns := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 32+6),
	}
	insns = append(insns, lookup(pidsMap, "exit")...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R9),
		asm.RSh.Imm(asm.R2, 32),
		asm.And.Imm(asm.R2, 63),
		asm.RSh.Reg(asm.R1, asm.R2),
		asm.And.Imm(asm.R1, 1),
		asm.JEq.Imm(asm.R1, 0, "exit"),
	)
	insns = append(insns, getSock...)
	insns = append(insns,
		asm.StoreMem(asm.RFP, fpSock, asm.R7, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 32),
		asm.StoreMem(asm.RFP, val(valTGID), asm.R1, asm.Word),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, val(valCookie), asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, val(valTID), asm.R9, asm.Word),
		asm.StoreMem(asm.RFP, val(valHow), asm.R8, asm.Word),
	)
	insns = append(insns, walk(o, slot, slot == acceptSlot)...)
	insns = append(insns,
		asm.FnJiffies64.Call(), // inlined: a load
		asm.StoreMem(asm.RFP, val(valTime), asm.R0, asm.DWord),
	)
	insns = append(insns, insert()...)
	insns = append(insns, asm.Mov.Imm(asm.R1, 0).WithSymbol("drop"))
	insns = append(insns, lookup(droppedMap, "exit")...)
	return append(insns,
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
func walk(o offsets, slot int32, regsAtFP bool) asm.Instructions {
	// storeFrame: s->frames[R9] = R4.
	storeFrame := asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.LSh.Imm(asm.R1, 3),
		asm.And.Imm(asm.R1, MaxDepth*8-1),
		asm.Add.Reg(asm.R1, asm.R6),
		asm.StoreMem(asm.R1, scratchFrames, asm.R4, asm.DWord),
	}
	insns := append(asm.Instructions{asm.Mov.Imm(asm.R1, slot)}, lookup(scratchMap, "drop")...)
	insns = append(insns, asm.Mov.Reg(asm.R6, asm.R0)) // R6: the scratch buffer
	if regsAtFP {
		insns = append(insns, asm.LoadMem(asm.R0, asm.RFP, fpRegs, asm.DWord))
	} else {
		insns = append(insns,
			asm.FnGetCurrentTaskBtf.Call(),
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.FnTaskPtRegs.Call(),
		)
	}
	insns = append(insns,
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
	)
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

		// The running hashes live in R5 and R0, spilled around the helper
		// calls of the slow paths: on the stack, their chain of multiplies
		// also waits for a store and a load a frame.
		asm.Mov.Imm(asm.R9, 1).WithSymbol("walk"), // R9: frames so far
		asm.LoadMem(asm.R5, asm.RFP, fpH1, asm.DWord),
		asm.LoadMem(asm.R0, asm.RFP, fpH2, asm.DWord),
		// A frame in the buffer takes one taken branch (back to frame).
		asm.JGE.Imm(asm.R9, MaxDepth, "walked").WithSymbol("frame"),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Sub.Reg(asm.R2, asm.R7),
		asm.JGT.Imm(asm.R2, bufBytes-16, "read"),
		asm.LoadMem(asm.R1, asm.RFP, fpLim, asm.DWord),
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.Add.Imm(asm.R3, 16),
		asm.JGT.Reg(asm.R3, asm.R1, "nextpage"),
		asm.Add.Reg(asm.R2, asm.R6),
		asm.LoadMem(asm.R3, asm.R2, 0, asm.DWord), // saved frame pointer
		asm.LoadMem(asm.R4, asm.R2, 8, asm.DWord), // return address
		asm.JEq.Imm(asm.R4, 0, "walked").WithSymbol("got"),
	)
	insns = append(insns, storeFrame...)
	insns = append(insns,
		asm.Xor.Reg(asm.R5, asm.R4),
		asm.LoadImm(asm.R2, hashMul1, asm.DWord),
		asm.Mul.Reg(asm.R5, asm.R2),
		asm.Add.Reg(asm.R0, asm.R4),
		asm.LoadImm(asm.R2, hashMul2, asm.DWord),
		asm.Mul.Reg(asm.R0, asm.R2),
		asm.Add.Imm(asm.R9, 1),
		asm.Mov.Reg(asm.R8, asm.R3),
		asm.Ja.Label("frame"),

		// The frame is in a page not read yet: read it.
		asm.JGE.Imm(asm.R1, bufBytes, "read").WithSymbol("nextpage"),
		asm.StoreMem(asm.RFP, fpH1, asm.R5, asm.DWord),
		asm.StoreMem(asm.RFP, fpH2, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Reg(asm.R3, asm.R1),
		asm.Add.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, pageBytes),
		asm.FnProbeReadUser.Call(),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.LoadMem(asm.R5, asm.RFP, fpH1, asm.DWord),
		asm.LoadMem(asm.R0, asm.RFP, fpH2, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "read"),
		asm.LoadMem(asm.R1, asm.RFP, fpLim, asm.DWord),
		asm.Add.Imm(asm.R1, pageBytes),
		asm.StoreMem(asm.RFP, fpLim, asm.R1, asm.DWord),
		asm.Ja.Label("frame"),

		// Outside the buffer: this frame alone.
		asm.JEq.Imm(asm.R8, 0, "walked").WithSymbol("read"),
		asm.StoreMem(asm.RFP, fpH1, asm.R5, asm.DWord),
		asm.StoreMem(asm.RFP, fpH2, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpFrame),
		asm.Mov.Imm(asm.R2, 16),
		asm.Mov.Reg(asm.R3, asm.R8),
		asm.FnProbeReadUser.Call(),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.LoadMem(asm.R5, asm.RFP, fpH1, asm.DWord),
		asm.LoadMem(asm.R0, asm.RFP, fpH2, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "walked"),
		asm.LoadMem(asm.R3, asm.RFP, fpFrame, asm.DWord),
		asm.LoadMem(asm.R4, asm.RFP, fpFrame+8, asm.DWord),
		asm.Ja.Label("got"),

		asm.JGE.Imm(asm.R9, MaxDepth, "hashed").WithSymbol("walked"),
		asm.Mov.Imm(asm.R4, 0),
	)
	insns = append(insns, storeFrame...)
	insns = append(insns,
		asm.Mov.Reg(asm.R7, asm.R5).WithSymbol("hashed"),
		asm.Xor.Reg(asm.R7, asm.R9), // R7: the first hash, the stack key
		asm.StoreMem(asm.RFP, val(valStack), asm.R7, asm.DWord),
		asm.Mov.Reg(asm.R8, asm.R0), // R8: the second hash
		asm.StoreMem(asm.R6, bufBytes, asm.R8, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, val(valTGID), asm.Word),
		asm.StoreMem(asm.RFP, fpKey, asm.R1, asm.Word),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, fpKey+4, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, fpKey+8, asm.R7, asm.DWord),
	)
	// This CPU's cache of stacks it stored or found: a hit needs no lookup
	// (stacks are never deleted, nor their slots changed).
	insns = append(insns, cacheEntry()...)
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.R1, scratchCache, asm.DWord),
		asm.JNE.Reg(asm.R2, asm.R7, "lookup"),
		asm.LoadMem(asm.R2, asm.R1, scratchCache+8, asm.DWord),
		asm.JNE.Reg(asm.R2, asm.R8, "lookup"),
		asm.LoadMem(asm.R2, asm.R1, scratchCache+16, asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, fpKey, asm.Word),
		asm.JNE.Reg(asm.R2, asm.R3, "lookup"),
		asm.LoadMem(asm.R9, asm.R1, scratchCache+20, asm.Word),
		asm.Ja.Label("stored"),

		asm.LoadMapPtr(asm.R1, 0).WithReference(stacksMap).WithSymbol("lookup"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "newstack"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord).WithSymbol("found"),
		asm.JNE.Reg(asm.R1, asm.R8, "drop"), // a different stack with the same key
		asm.LoadMem(asm.R9, asm.R0, 8, asm.Word),
		asm.Ja.Label("cache"),

		// A new stack: its closed-count slot, then the stack.
		asm.Mov.Imm(asm.R1, 0).WithSymbol("newstack"),
	)
	insns = append(insns, lookup(nslotsMap, "drop")...)
	insns = append(insns,
		asm.Mov.Imm(asm.R9, 1),
		atomic(asm.FetchAdd, asm.R0, asm.R9), // R9: the slot
		asm.JGE.Imm(asm.R9, MaxStacks, "drop"),
		asm.StoreMem(asm.R6, bufBytes+8, asm.R9, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R9),
	)
	insns = append(insns, lookup(slotKeysMap, "drop")...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, fpKey, asm.DWord),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.StoreMem(asm.R0, 8, asm.R7, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(stacksMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKey),
		asm.Mov.Reg(asm.R3, asm.R6),
		asm.Add.Imm(asm.R3, bufBytes),
		asm.Mov.Imm(asm.R4, 1), // BPF_NOEXIST
		asm.FnMapUpdateElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "cache"),
		asm.JNE.Imm(asm.R0, -int32(unix.EEXIST), "drop"), // full
		// Another CPU stored it first: use its slot (this one stays unused).
		asm.LoadMapPtr(asm.R1, 0).WithReference(stacksMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpKey),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "found"),
		asm.Ja.Label("drop"),
	)
	insns = append(insns, cacheEntry()...)
	insns[len(insns)-len(cacheEntry())] = insns[len(insns)-len(cacheEntry())].WithSymbol("cache")
	return append(insns,
		asm.StoreMem(asm.R1, scratchCache, asm.R7, asm.DWord),
		asm.StoreMem(asm.R1, scratchCache+8, asm.R8, asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, fpKey, asm.Word),
		asm.StoreMem(asm.R1, scratchCache+16, asm.R2, asm.Word),
		asm.StoreMem(asm.R1, scratchCache+20, asm.R9, asm.Word),
		asm.StoreMem(asm.RFP, val(valSlot), asm.R9, asm.Word).WithSymbol("stored"),
	)
}

// atomic is the 64-bit atomic op on *dst (src, and R0 for CmpXchg) with
// the operation also set in the constant: cilium/ebpf v0.22.0 marshals the
// constant it was given, not the one it derives from the opcode, so
// op.Mem alone emits a plain (non-fetching) atomic add.
func atomic(op asm.AtomicOp, dst, src asm.Register) asm.Instruction {
	ins := op.Mem(dst, src, asm.DWord, 0)
	ins.Constant = int64(op >> 8)
	return ins
}

// cacheEntry leaves in R1 the address of the stack cache entry for the
// stack key in R7, less scratchCache (R6 is the scratch buffer).
func cacheEntry() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.And.Imm(asm.R1, cacheEntries-1),
		asm.Mul.Imm(asm.R1, cacheEntrySize),
		asm.Add.Reg(asm.R1, asm.R6),
	}
}

// setOf leaves in R0 the keys of the set of the socket address at
// fp+fpSock (and its set index at fp+fpScratch), exiting if the lookup
// fails (it cannot: the verifier wants the NULL check).
func setOf() asm.Instructions {
	return append(asm.Instructions{
		asm.LoadMem(asm.R1, asm.RFP, fpSock, asm.DWord),
		asm.LoadImm(asm.R2, hashMul1, asm.DWord),
		asm.Mul.Reg(asm.R1, asm.R2),
		asm.RSh.Imm(asm.R1, 64-setBits),
	}, lookup(keysMap, "exit")...)
}

// findWay jumps to label with the way in R9 when the set's keys at R8
// hold the socket address in R7, and falls through otherwise. prefix
// names its labels.
func findWay(prefix, label string) asm.Instructions {
	var insns asm.Instructions
	for w := range setWays {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R8, int16(8*w), asm.DWord),
			asm.JEq.Reg(asm.R1, asm.R7, fmt.Sprintf("%s%d", prefix, w)),
		)
	}
	over := prefix + "none"
	insns = append(insns, asm.Ja.Label(over))
	for w := range setWays {
		insns = append(insns,
			asm.Mov.Imm(asm.R9, int32(w)).WithSymbol(fmt.Sprintf("%s%d", prefix, w)),
			asm.Ja.Label(label),
		)
	}
	return append(insns, asm.Mov.Imm(asm.R9, 0).WithSymbol(over))
}

// record leaves in R0 the record of way R9 of the set at fp+fpScratch,
// jumping to fail if the lookup fails (it cannot).
func record(fail string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(recordsMap),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpScratch),
		asm.FnMapLookupElem.Call(), // an array: inlined
		asm.JEq.Imm(asm.R0, 0, fail),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.Mul.Imm(asm.R1, valSize),
		asm.Add.Reg(asm.R0, asm.R1),
	}
}

// recordOf leaves in R0 the record of the socket in R7 (a BTF pointer), in
// R9 its way and in R8 its set's keys, with R7 and fp+fpSock its id
// (sockID), or exits when the table does not hold it. slot is the
// program's scratch entry.
func recordOf(slot int32) asm.Instructions {
	insns := append(sockID(slot, false), asm.StoreMem(asm.RFP, fpSock, asm.R7, asm.DWord))
	insns = append(insns, setOf()...)
	insns = append(insns, asm.Mov.Reg(asm.R8, asm.R0)) // R8: the set's keys
	insns = append(insns, findWay("way", "held")...)
	insns = append(insns, asm.Ja.Label("exit"))
	rec := record("exit")
	rec[0] = rec[0].WithSymbol("held")
	return append(insns, rec...)
}

// insert stores the record at fp+val(0) for the socket at fp+fpSock in
// the table (see setWays), jumping to drop when its set is full.
func insert() asm.Instructions {
	insns := setOf()
	insns = append(insns,
		asm.Mov.Reg(asm.R8, asm.R0), // R8: the set's keys
		asm.LoadMem(asm.R7, asm.RFP, fpSock, asm.DWord),
	)
	insns = append(insns, findWay("same", "claim")...)
	// Not there: the first free way.
	for w := range setWays {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R8, int16(8*w), asm.DWord),
			asm.Mov.Imm(asm.R9, int32(w)),
			asm.JEq.Imm(asm.R1, 0, "free"),
		)
	}
	insns = append(insns,
		asm.Ja.Label("drop"),
		asm.Mov.Imm(asm.R7, 0).WithSymbol("free"), // R7: the way's expected key
		// claim: cmpxchg(&keys[way], R7, sk|busy) or drop.
		asm.Mov.Reg(asm.R2, asm.R9).WithSymbol("claim"),
		asm.LSh.Imm(asm.R2, 3),
		asm.Add.Reg(asm.R8, asm.R2), // R8: the way's key
		asm.Mov.Reg(asm.R0, asm.R7),
		asm.LoadMem(asm.R1, asm.RFP, fpSock, asm.DWord),
		asm.Or.Imm(asm.R1, busyBit),
		atomic(asm.CmpXchg, asm.R8, asm.R1),
		asm.JNE.Reg(asm.R0, asm.R7, "drop"), // another CPU took it
	)
	insns = append(insns, record("drop")...)
	for off := 0; off < valSize; off += 8 {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.RFP, val(off), asm.DWord),
			asm.StoreMem(asm.R0, int16(off), asm.R1, asm.DWord),
		)
	}
	return append(insns,
		// Publish: sk|busy becomes sk, with a fetching atomic (a full
		// barrier: the record is visible before its key).
		asm.Mov.Imm(asm.R1, -busyBit),
		atomic(asm.FetchAdd, asm.R8, asm.R1),
		asm.Ja.Label("exit"),
	)
}

// stateProgram is the tp_btf/inet_sock_set_state program; its arguments
// are (const struct sock *sk, int oldstate, int newstate).
//
//	if (new == TCP_CLOSE) goto closed;
//	if (new != TCP_SYN_SENT || old != TCP_CLOSE) return 0;   // not a connect()
//	if (!sk || sk->sk_protocol != IPPROTO_TCP) return 0;
//	capture(sk, Connected);
//	closed:
//	set = hash(sk); way = the way of keys[set] holding sk, else return 0;
//	slot = records[set][way].slot;
//	if (cmpxchg(&keys[set][way], sk, 0) != sk) return 0;   // another CPU did
//	closed[slot]++;
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
	getSock := append(asm.Instructions{asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord)}, tcpOnly(o, asm.R7)...)
	insns = append(insns, capture(o, 1, append(getSock, sockID(1, false)...))...)

	insns = append(insns,
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord).WithSymbol("closed"),
		asm.JEq.Imm(asm.R7, 0, "exit"),
	)
	insns = append(insns, recordOf(1)...)
	insns = append(insns,
		// The slot before the way is freed: then it may be reused.
		asm.LoadMem(asm.R6, asm.R0, valSlot, asm.Word),
		asm.LSh.Imm(asm.R9, 3),
		asm.Add.Reg(asm.R8, asm.R9),
		asm.Mov.Reg(asm.R0, asm.R7),
		asm.Mov.Imm(asm.R1, 0),
		atomic(asm.CmpXchg, asm.R8, asm.R1),
		asm.JNE.Reg(asm.R0, asm.R7, "exit"), // another CPU counted it
		asm.Mov.Reg(asm.R1, asm.R6),
	)
	insns = append(insns, lookup(closedMap, "exit")...)
	return append(insns,
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	), nil
}

// sockID turns the socket in R7 (a pointer; with scalar, a plain
// address) into the number the socket table keys it by: its distance from
// the table's first set, an array map value whose address is fixed while
// the recorder lives (and page-aligned: the number keeps the socket's
// alignment). The verifier allows no arithmetic on pointers but adding
// and subtracting a number; with CAP_PERFMON, one pointer less another is
// a number. A plain address has the base made a number too: stored in the
// program's scratch entry and read back (CAP_PERFMON allows a pointer in a
// map). It uses R0-R2 (and R6 with scalar).
func sockID(slot int32, scalar bool) asm.Instructions {
	insns := append(asm.Instructions{asm.Mov.Imm(asm.R1, 0)}, lookup(keysMap, "exit")...)
	if !scalar {
		return append(insns, asm.Sub.Reg(asm.R7, asm.R0))
	}
	insns = append(insns, asm.Mov.Reg(asm.R6, asm.R0), asm.Mov.Imm(asm.R1, slot))
	insns = append(insns, lookup(scratchMap, "exit")...)
	return append(insns,
		asm.StoreMem(asm.R0, 0, asm.R6, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Sub.Reg(asm.R7, asm.R1),
	)
}

// kfuncCall calls the kernel function with BTF id id in vmlinux.
func kfuncCall(id btf.TypeID) asm.Instruction {
	return asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: int64(id)}
}

// readKernel loads into dst the value of size at the kernel address R3+off
// (R3 is advanced by off), read with bpf_probe_read_kernel through the
// stack word at fpWord, exiting on a fault. It uses R0-R3.
func readKernel(off uint32, size asm.Size, dst asm.Register) asm.Instructions {
	return asm.Instructions{
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, fpWord),
		asm.Mov.Imm(asm.R2, int32(size.Sizeof())),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(dst, asm.RFP, fpWord, size),
	}
}

// chase replaces the kernel address in R3 by the pointer at R3+off,
// exiting on a fault or a NULL.
func chase(off uint32) asm.Instructions {
	return append(readKernel(off, asm.DWord, asm.R3), asm.JEq.Imm(asm.R3, 0, "exit"))
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
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord), // regs: the user registers
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.LoadMem(asm.R3, asm.R1, int16(o.regsSysNr), o.sysNrSize),
		asm.JEq.Imm(asm.R3, sysAccept4, "accepted"),
		asm.JNE.Imm(asm.R3, sysAccept, "exit"),
		asm.StoreMem(asm.RFP, fpFD, asm.R2, asm.DWord).WithSymbol("accepted"),
		asm.StoreMem(asm.RFP, fpRegs, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R8, Accepted),
	}
	// task->files->fdt->fd through BTF pointers (plain loads, which the
	// verifier guards); fd is a pointer to pointers, a plain number to the
	// verifier: the rest is read with bpf_probe_read_kernel.
	getSock := asm.Instructions{
		asm.FnGetCurrentTaskBtf.Call(),
		asm.LoadMem(asm.R3, asm.R0, int16(o.taskFiles), asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "exit"),
		asm.LoadMem(asm.R3, asm.R3, int16(o.filesFdt), asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "exit"),
		asm.LoadMem(asm.R3, asm.R3, int16(o.fdtFd), asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "exit"),
	}
	getSock = append(getSock,
		asm.LoadMem(asm.R2, asm.RFP, fpFD, asm.DWord),
		asm.JGT.Imm(asm.R2, 1<<30, "exit"),
		asm.LSh.Imm(asm.R2, 3),
		asm.Add.Reg(asm.R3, asm.R2),
	)
	plainLoads := o.rdonlyCast != 0
	if plainLoads {
		// fd[ret]->private_data->sk with plain loads through
		// bpf_rdonly_cast (which the verifier turns into a move; the
		// loads are guarded like BTF pointer loads): no helper call.
		getSock = append(getSock,
			asm.Mov.Reg(asm.R1, asm.R3),
			asm.Mov.Imm(asm.R2, int32(o.llistNode)),
			kfuncCall(o.rdonlyCast),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), // struct file *
			asm.JEq.Imm(asm.R1, 0, "exit"),
			asm.Mov.Imm(asm.R2, int32(o.file)),
			kfuncCall(o.rdonlyCast),
			asm.LoadMem(asm.R1, asm.R0, int16(o.filePrivate), asm.DWord), // struct socket *
			asm.JEq.Imm(asm.R1, 0, "exit"),
			asm.Mov.Imm(asm.R2, int32(o.socket)),
			kfuncCall(o.rdonlyCast),
			asm.LoadMem(asm.R7, asm.R0, int16(o.socketSk), asm.DWord), // struct sock *
			asm.JEq.Imm(asm.R7, 0, "exit"),
			asm.LoadMem(asm.R2, asm.R7, int16(o.protocol), asm.Half),
			asm.JNE.Imm(asm.R2, unix.IPPROTO_TCP, "exit"),
		)
	} else {
		getSock = append(getSock, chase(0)...)             // struct file *
		getSock = append(getSock, chase(o.filePrivate)...) // struct socket *
		getSock = append(getSock, chase(o.socketSk)...)    // struct sock *
		// sk_protocol, read the same way: R7 is a plain number here.
		getSock = append(getSock, asm.Mov.Reg(asm.R7, asm.R3))
		getSock = append(getSock, readKernel(o.protocol, asm.Half, asm.R2)...)
		getSock = append(getSock, asm.JNE.Imm(asm.R2, unix.IPPROTO_TCP, "exit"))
	}
	getSock = append(getSock, sockID(acceptSlot, !plainLoads)...)
	insns = append(insns, capture(o, acceptSlot, getSock)...)
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
//	sk = ctx->sk_common; set = hash(sk);
//	if (!sk || no way of keys[set] holds sk) return 0;
//	records[set][way].cookie = bpf_get_socket_cookie(sk);
func cookieProgram() asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, 8, asm.DWord), // R6: the socket, a BTF pointer
		asm.JEq.Imm(asm.R6, 0, "exit"),
		asm.Mov.Reg(asm.R7, asm.R6),
	}
	insns = append(insns, recordOf(2)...)
	return append(insns,
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.R9, valCookie, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
}

// clockProgram is a syscall program, run by the recorder, that writes
// jiffies and CLOCK_MONOTONIC (ns) into its context, side by side. The
// programs stamp a creation with jiffies, which the verifier inlines into
// one load, where bpf_ktime_get_ns cost about 150 ns a creation on the
// virtual machine this was measured on; two such pairs, one taken before
// the programs are attached, turn jiffies into time (see clockRate).
//
//	ctx->jiffies = bpf_jiffies64(); ctx->mono = bpf_ktime_get_ns();
func clockProgram() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnJiffies64.Call(),
		asm.StoreMem(asm.R6, 0, asm.R0, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.R6, 8, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
}

// lookup looks up the element of map m whose 32-bit key is in R1, through
// the scratch word on the stack (an array's lookup is inlined by the
// verifier): R0 is the element, or the program jumps to miss. It uses R1
// and R2.
func lookup(m, miss string) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, fpScratch, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(m),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, fpScratch),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
	}
}
