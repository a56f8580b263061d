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
)

// TCP states of include/net/tcp_states.h.
const (
	tcpSynSent = 2
	tcpClose   = 7
)

// bpfFUserStack is BPF_F_USER_STACK of include/uapi/linux/bpf.h.
const bpfFUserStack = 1 << 8

// The value of the socks map (keyed by the struct sock address), native
// byte order. Its first keySize bytes, (tgid, stack id), are the key of
// the closed map: not the top words, which hold the leaf's locals too and
// would make a key per call.
const (
	valTGID    = 0 // u32
	valStackID = 4 // s32
	valTop     = 8 // TopWords × u64
	valTID     = valTop + TopWords*8
	valHow     = valTID + 4
	valTime    = valHow + 4  // u64 CLOCK_MONOTONIC ns
	valCookie  = valTime + 8 // u64 socket cookie, set when it enters CLOSE_WAIT
	valSize    = valCookie + 8
	keySize    = valTop // (tgid, stack id): a StackKey
)

// Stack frame of the programs: fp-8 the socks key (the struct sock
// address), fp-16 a scratch key or value, fp-24 the accepted fd, fp-32 a
// probe-read word, and the socks value below them.
const (
	fpSock    = -8
	fpScratch = -16
	fpFD      = -24
	fpWord    = -32
	fpVal     = -32 - valSize
)

func val(off int) int16 { return int16(fpVal + off) }

// offsets are the kernel struct members the programs read.
type offsets struct {
	protocol    uint32 // struct sock: sk_protocol (u16)
	regsSP      uint32 // struct pt_regs: the user stack pointer (u64)
	regsSysNr   uint32 // struct pt_regs: the system call number (orig_ax, syscallno)
	sysNrSize   asm.Size
	taskFiles   uint32 // struct task_struct: files
	filesFdt    uint32 // struct files_struct: fdt
	fdtFd       uint32 // struct fdtable: fd
	filePrivate uint32 // struct file: private_data (the struct socket)
	socketSk    uint32 // struct socket: sk
}

func checkOffsets(o offsets) error {
	for _, off := range []uint32{o.protocol, o.regsSP, o.regsSysNr, o.taskFiles, o.filesFdt, o.fdtFd, o.filePrivate, o.socketSk} {
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
// is traced. R6 holds the context. getSock runs once the process is known
// to be traced: it leaves the struct sock address in R7 (or exits) and
// must keep R6, R8 and R9.
//
//	tgid = bpf_get_current_pid_tgid() >> 32;
//	if (!bpf_map_lookup_elem(&pids, &tgid)) return 0;
//	sk = getSock();
//	v = {tgid, bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK), top, tid, how, now, 0};
//	if (v.stackid < 0) goto drop;
//	bpf_probe_read_user(v.top, sizeof v.top, bpf_task_pt_regs(current)->sp);
//	if (bpf_map_update_elem(&socks, &sk, &v, BPF_ANY)) goto drop;
//	return 0;
//	drop: dropped[0]++;
func capture(o offsets, getSock asm.Instructions) asm.Instructions {
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
	return append(insns,
		asm.StoreMem(asm.RFP, fpSock, asm.R7, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 32),
		asm.StoreMem(asm.RFP, val(valTGID), asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, val(valTID), asm.R9, asm.Word),
		asm.StoreMem(asm.RFP, val(valHow), asm.R8, asm.Word),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, val(valCookie), asm.R1, asm.DWord),

		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, 0).WithReference(stacksMap),
		asm.Mov.Imm(asm.R3, bpfFUserStack),
		asm.FnGetStackid.Call(),
		asm.JSLT.Imm(asm.R0, 0, "drop"),
		asm.StoreMem(asm.RFP, val(valStackID), asm.R0, asm.Word),

		asm.FnGetCurrentTaskBtf.Call(),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.FnTaskPtRegs.Call(),
		asm.LoadMem(asm.R3, asm.R0, int16(o.regsSP), asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(val(valTop))),
		asm.Mov.Imm(asm.R2, TopWords*8),
		asm.FnProbeReadUser.Call(), // zero-fills on a fault

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
//	c = bpf_map_lookup_elem(&closed, v);   // v starts with (tgid, stack id)
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
	insns = append(insns, capture(o, append(asm.Instructions{
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
	insns = append(insns, capture(o, getSock)...)
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
