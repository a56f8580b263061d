package sockevents

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Map symbols of the program.
const (
	ringMapName = "events"
	lostMapName = "lost"
)

// tcpCloseWait is TCP_CLOSE_WAIT of include/net/tcp_states.h.
const tcpCloseWait = 8

// bpfRBNoWakeup is BPF_RB_NO_WAKEUP: Drain polls the ring without waiting,
// so the program need not wake a reader (an irq_work per record).
const bpfRBNoWakeup = 1

// Record layout, native byte order; the head of struct sock follows.
const (
	recCookie = 0  // u64 socket cookie
	recTime   = 8  // u64 CLOCK_MONOTONIC ns
	recNetNS  = 16 // u32 network namespace inode
	recOld    = 20 // u32 old state
	recNew    = 24 // u32 new state
	recPad    = 28 // u32 zero
	recHead   = 32 // the first l.head bytes of struct sock
)

func recordSize(l layout) int { return recHead + int(l.head) }

// buildProgram returns the tp_btf/inet_sock_set_state program for the
// layout l. The tracepoint's arguments are (const struct sock *sk, int
// oldstate, int newstate), each a u64 of the context.
//
//	if (old != CLOSE_WAIT && new != CLOSE_WAIT) return 0;
//	if (!sk || sk->sk_protocol != IPPROTO_TCP) return 0;
//	rec = {bpf_get_socket_cookie(sk), bpf_ktime_get_ns(),
//	       sk->skc_net.net ? sk->skc_net.net->ns.inum : 0, old, new, 0};
//	bpf_probe_read_kernel(rec.head, l.head, sk);
//	if (bpf_ringbuf_output(&events, &rec, size, BPF_RB_NO_WAKEUP)) lost[0]++;
//	return 0;
//
// The record lives at fp-size; the lost map's key at fp-size-8.
func buildProgram(l layout) (asm.Instructions, error) {
	size := recordSize(l)
	for _, s := range []span{l.protocol, l.net, l.nsInum} {
		if s.Off > math.MaxInt16 {
			return nil, fmt.Errorf("offset %d beyond int16", s.Off)
		}
	}
	const (
		ctx  = asm.R6
		sk   = asm.R7
		exit = "exit"
	)
	rec := func(off int) int16 { return int16(-size + off) }
	return asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(asm.R2, ctx, 8, asm.DWord),  // oldstate
		asm.LoadMem(asm.R3, ctx, 16, asm.DWord), // newstate
		asm.JEq.Imm(asm.R2, tcpCloseWait, "keep"),
		asm.JNE.Imm(asm.R3, tcpCloseWait, exit),
		asm.StoreMem(asm.RFP, rec(recOld), asm.R2, asm.Word).WithSymbol("keep"),
		asm.StoreMem(asm.RFP, rec(recNew), asm.R3, asm.Word),
		asm.LoadMem(sk, ctx, 0, asm.DWord),
		asm.JEq.Imm(sk, 0, exit),
		asm.LoadMem(asm.R2, sk, int16(l.protocol.Off), asm.Half),
		asm.JNE.Imm(asm.R2, unix.IPPROTO_TCP, exit),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, rec(recPad), asm.R2, asm.Word),

		asm.Mov.Reg(asm.R1, sk),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, rec(recCookie), asm.R0, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, rec(recTime), asm.R0, asm.DWord),

		asm.LoadMem(asm.R1, sk, int16(l.net.Off), asm.DWord), // struct net *
		asm.Mov.Imm(asm.R2, 0),
		asm.JEq.Imm(asm.R1, 0, "netns"),
		asm.LoadMem(asm.R2, asm.R1, int16(l.nsInum.Off), asm.Word),
		asm.StoreMem(asm.RFP, rec(recNetNS), asm.R2, asm.Word).WithSymbol("netns"),

		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(rec(recHead))),
		asm.Mov.Imm(asm.R2, int32(l.head)),
		asm.Mov.Reg(asm.R3, sk),
		asm.FnProbeReadKernel.Call(),

		asm.LoadMapPtr(asm.R1, 0).WithReference(ringMapName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(rec(0))),
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, bpfRBNoWakeup),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, exit),

		// The ring is full: count the loss so that Drain can say so.
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, rec(-8), asm.R2, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(lostMapName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(rec(-8))),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, exit),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),

		asm.Mov.Imm(asm.R0, 0).WithSymbol(exit),
		asm.Return(),
	}, nil
}
