package ebpfstates

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/btflayout"
	"github.com/closewait/closewait/internal/ebpfsupport"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Kernel TCP state numbers the program tests (include/net/tcp_states.h).
const (
	tcpTimeWait   = int32(sockdiag.TimeWait)
	tcpNewSynRecv = int32(sockdiag.NewSynRecv)
	tcpSynRecv    = int32(sockdiag.SynRecv)
)

// numCounters is the size of the counter array: one u64 per state number.
const numCounters = len(sockdiag.StateCounts{})

// Names of the program and its map in their collection.
const (
	progName   = "cw_states"
	countsName = "cw_state_counts"
)

// Counter is the loaded counting program attached as a tcp iterator. A
// [Counter.Count] is one pass; passes are serialised (they share the
// counters). Loading costs a few milliseconds of verification plus the
// kernel BTF (shared with the process's other programs); keep one Counter
// for many passes.
type Counter struct {
	mu     sync.Mutex
	coll   *ebpf.Collection
	iter   *link.Iter
	counts *ebpf.Memory // the counters, mmap'd: numCounters native-endian u64
}

// layout is where the program's loads sit in the kernel's structs.
type layout struct {
	skcState   btflayout.Field // sock_common.skc_state
	twSubstate btflayout.Field // tcp_timewait_sock.tw_sk.tw_substate
}

func kernelLayout(spec *btf.Spec) (layout, error) {
	var l layout
	for _, m := range []struct {
		st   string
		path []string
		dst  *btflayout.Field
	}{
		{"sock_common", []string{"skc_state"}, &l.skcState},
		{"tcp_timewait_sock", []string{"tw_sk", "tw_substate"}, &l.twSubstate},
	} {
		var s *btf.Struct
		if err := spec.TypeByName(m.st, &s); err != nil {
			return layout{}, fmt.Errorf("btf struct %s: %w", m.st, err)
		}
		f, err := btflayout.Member(s, m.path...)
		if err != nil {
			return layout{}, fmt.Errorf("%s.%v: %w", m.st, m.path, err)
		}
		if f.Size != 1 {
			return layout{}, fmt.Errorf("%s.%v is %d bytes, not 1", m.st, m.path, f.Size)
		}
		*m.dst = f
	}
	return l, nil
}

// program is the iter/tcp program. Its context is struct bpf_iter__tcp
// {meta, sk_common, uid}; it is called once per socket and once more with
// a NULL socket at the end.
//
//	sk = ctx->sk_common; if (!sk) return 0;
//	st = sk->skc_state;
//	if (st == TCP_TIME_WAIT) { tw = bpf_skc_to_tcp_timewait_sock(sk); if (tw) st = tw->tw_sk.tw_substate; }
//	else if (st == TCP_NEW_SYN_RECV) st = TCP_SYN_RECV;
//	key = st & 15; if ((v = bpf_map_lookup_elem(&counts, &key))) __sync_fetch_and_add(v, 1);
//	return 0;
func program(l layout) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, 8, asm.DWord),
		asm.JEq.Imm(asm.R6, 0, "exit"),
		asm.LoadMem(asm.R7, asm.R6, int16(l.skcState.Off), asm.Byte),
		asm.JNE.Imm(asm.R7, tcpTimeWait, "reqsk"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnSkcToTcpTimewaitSock.Call(),
		asm.JEq.Imm(asm.R0, 0, "count"),
		asm.LoadMem(asm.R7, asm.R0, int16(l.twSubstate.Off), asm.Byte),
		asm.Ja.Label("count"),
		asm.JNE.Imm(asm.R7, tcpNewSynRecv, "count").WithSymbol("reqsk"),
		asm.Mov.Imm(asm.R7, tcpSynRecv),
		asm.And.Imm(asm.R7, int32(numCounters-1)).WithSymbol("count"),
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(countsName),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	}
}

// Load reads the kernel BTF, verifies the program and attaches it as a tcp
// iterator. On kernels before 5.11, which charge BPF memory to
// RLIMIT_MEMLOCK, it raises that limit of the process to infinity.
//
// Errors wrap [ErrNotSupported] when the kernel lacks BTF or the tcp
// iterator, or the process lacks the capabilities; a verifier rejection is
// returned wrapped but is not ErrNotSupported.
func Load() (_ *Counter, err error) {
	_ = rlimit.RemoveMemlock()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("ebpfstates: load kernel BTF: %w", classify(err))
	}
	l, err := kernelLayout(spec)
	if err != nil {
		return nil, fmt.Errorf("ebpfstates: kernel BTF layout: %w: %w", ErrNotSupported, err)
	}
	cs := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{countsName: {
			Name: countsName, Type: ebpf.Array, KeySize: 4, ValueSize: 8,
			MaxEntries: uint32(numCounters), Flags: unix.BPF_F_MMAPABLE,
		}},
		Programs: map[string]*ebpf.ProgramSpec{progName: {
			Name: progName, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
			AttachTo: "tcp", License: License, Instructions: program(l),
		}},
	}
	c := &Counter{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	c.coll, err = ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: spec},
	})
	if err != nil {
		return nil, fmt.Errorf("ebpfstates: load tcp iterator program: %w", classify(err))
	}
	c.counts, err = c.coll.Maps[countsName].Memory()
	if err != nil {
		return nil, fmt.Errorf("ebpfstates: mmap counters: %w", classify(err))
	}
	c.iter, err = link.AttachIter(link.IterOptions{Program: c.coll.Programs[progName]})
	if err != nil {
		return nil, fmt.Errorf("ebpfstates: attach tcp iterator: %w", classify(err))
	}
	return c, nil
}

func classify(err error) error { return ebpfsupport.Classify(err, ErrNotSupported) }

// Count walks the TCP sockets (IPv4 and IPv6) of the calling thread's
// network namespace and returns how many are in each state.
func (c *Counter) Count() (sockdiag.StateCounts, error) {
	if c == nil || c.iter == nil {
		return sockdiag.StateCounts{}, errors.New("ebpfstates: count: counter is closed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var raw [numCounters * 8]byte
	if _, err := c.counts.WriteAt(raw[:], 0); err != nil {
		return sockdiag.StateCounts{}, fmt.Errorf("ebpfstates: reset counters: %w", err)
	}
	if err := drain(c.iter); err != nil {
		return sockdiag.StateCounts{}, err
	}
	if _, err := c.counts.ReadAt(raw[:], 0); err != nil {
		return sockdiag.StateCounts{}, fmt.Errorf("ebpfstates: read counters: %w", err)
	}
	var out sockdiag.StateCounts
	for i := range out {
		out[i] = int(binary.NativeEndian.Uint64(raw[i*8:]))
	}
	return out, nil
}

// drain runs one pass of the iterator: the program writes nothing, so each
// read returns EAGAIN after a million sockets (the kernel's
// MAX_ITER_OBJECTS without output, position kept) and EOF at the end.
func drain(l *link.Iter) error {
	r, err := l.Open()
	if err != nil {
		return fmt.Errorf("ebpfstates: open iterator: %w", err)
	}
	defer r.Close()
	var buf [64]byte
	for {
		_, err := r.Read(buf[:])
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), err == nil:
			continue
		default:
			return fmt.Errorf("ebpfstates: read iterator: %w", err)
		}
	}
}

// Close detaches and unloads the program. It is safe to call more than once.
func (c *Counter) Close() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.iter != nil {
		errs = append(errs, c.iter.Close())
		c.iter = nil
	}
	if c.coll != nil {
		c.coll.Close()
		c.coll = nil
	}
	return errors.Join(errs...)
}
