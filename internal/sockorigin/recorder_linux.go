package sockorigin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/btflayout"
	"github.com/closewait/closewait/internal/ebpfsupport"
	"github.com/closewait/closewait/internal/netns"
)

// Program names, as the kernel's BPF statistics name them.
const (
	StateProgram  = "cw_origin_state"
	AcceptProgram = "cw_origin_accept"
	cookieProg    = "cw_origin_cookie"
	clockProg     = "cw_origin_clock"
)

// Recorder is the loaded and attached pair of programs with their maps.
// Create it with Open. Its methods are safe for use by one goroutine at a
// time.
type Recorder struct {
	coll   *ebpf.Collection
	state  link.Link
	accept link.Link // nil while the accept hook is detached (SetAccepts)
	cookie *link.Iter
	traced map[int]bool
	opened clockPair // taken before the programs were attached
}

// pidWords is the size of the pids bitmap in 64-bit words: one bit for
// every pid up to the kernel's PID_MAX_LIMIT (4,194,304; 512 KB).
const pidWords = 1 << 22 / 64

// Open reads the kernel BTF, builds, verifies and attaches the programs.
// No process is traced until AddPID. Errors wrap ErrNotSupported when the
// kernel or the process's capabilities do not allow it (with EPERM,
// errors.Is(err, os.ErrPermission) also holds).
func Open() (*Recorder, error) { return open(nil) }

// open is Open with the programs built from the kernel's offsets as tweak
// (if not nil) changes them: tests build the older kernels' variants.
func open(tweak func(*offsets)) (_ *Recorder, err error) {
	_ = rlimit.RemoveMemlock() // kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("sockorigin: load kernel BTF: %w", classify(err))
	}
	o, err := kernelOffsets(spec)
	if err != nil {
		return nil, fmt.Errorf("sockorigin: kernel BTF layout: %w: %w", ErrNotSupported, err)
	}
	if tweak != nil {
		tweak(&o)
	}
	state, err := stateProgram(o)
	if err != nil {
		return nil, fmt.Errorf("sockorigin: build program: %w", err)
	}
	accept, err := acceptProgram(o)
	if err != nil {
		return nil, fmt.Errorf("sockorigin: build program: %w", err)
	}
	cs := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			pidsMap:     {Name: "cw_or_pids", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: pidWords},
			keysMap:     {Name: "cw_or_keys", Type: ebpf.Array, KeySize: 4, ValueSize: setBytes, MaxEntries: numSets, Flags: unix.BPF_F_MMAPABLE},
			recordsMap:  {Name: "cw_or_records", Type: ebpf.Array, KeySize: 4, ValueSize: recsSize, MaxEntries: numSets},
			stacksMap:   {Name: "cw_or_stacks", Type: ebpf.Hash, KeySize: 16, ValueSize: stackValSize, MaxEntries: MaxStacks},
			scratchMap:  {Name: "cw_or_scratch", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: scratchSize, MaxEntries: 3},
			closedMap:   {Name: "cw_or_closed", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: MaxStacks},
			slotKeysMap: {Name: "cw_or_slotkeys", Type: ebpf.Array, KeySize: 4, ValueSize: 16, MaxEntries: MaxStacks},
			nslotsMap:   {Name: "cw_or_nslots", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
			droppedMap:  {Name: "cw_or_dropped", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			StateProgram: {
				Name: StateProgram, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
				AttachTo: "inet_sock_set_state", License: License, Instructions: state,
			},
			AcceptProgram: {
				Name: AcceptProgram, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
				AttachTo: "sys_exit", License: License, Instructions: accept,
			},
			cookieProg: {
				Name: cookieProg, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
				AttachTo: "tcp", License: License, Instructions: cookieProgram(),
			},
			clockProg: {
				Name: clockProg, Type: ebpf.Syscall, Flags: unix.BPF_F_SLEEPABLE, License: License, Instructions: clockProgram(),
			},
		},
	}
	r := &Recorder{traced: map[int]bool{}}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.coll, err = ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: spec},
	})
	if err != nil {
		return nil, fmt.Errorf("sockorigin: load programs: %w", classify(err))
	}
	if r.opened, err = r.clock(); err != nil {
		return nil, err
	}
	if r.state, err = r.attach(StateProgram); err != nil {
		return nil, err
	}
	if err := r.SetAccepts(true); err != nil {
		return nil, err
	}
	r.cookie, err = link.AttachIter(link.IterOptions{Program: r.coll.Programs[cookieProg]})
	if err != nil {
		return nil, fmt.Errorf("sockorigin: attach the tcp iterator: %w", classify(err))
	}
	return r, nil
}

// kernelOffsets reads the struct members the programs load from BTF.
func kernelOffsets(spec *btf.Spec) (offsets, error) {
	structs := map[string]*btf.Struct{}
	for _, name := range []string{"sock", "pt_regs", "task_struct", "files_struct", "fdtable", "file", "socket"} {
		var s *btf.Struct
		if err := spec.TypeByName(name, &s); err != nil {
			return offsets{}, fmt.Errorf("btf struct %s: %w", name, err)
		}
		structs[name] = s
	}
	sysNr, fp, fpOff, ip := "orig_ax", "bp", uint32(0), "ip"
	if runtime.GOARCH == "arm64" {
		sysNr, fp, fpOff, ip = "syscallno", "regs", 29*8, "pc" // x29 is the frame pointer
	}
	var o offsets
	var nr btflayout.Field
	for _, w := range []struct {
		st, member string
		dst        *uint32
		size       uint32 // 0: any
	}{
		{"sock", "sk_protocol", &o.protocol, 2},
		{"pt_regs", "sp", &o.regsSP, 8},
		{"pt_regs", fp, &o.regsFP, 0},
		{"pt_regs", ip, &o.regsIP, 8},
		{"pt_regs", sysNr, &nr.Off, 0},
		{"task_struct", "files", &o.taskFiles, 8},
		{"files_struct", "fdt", &o.filesFdt, 8},
		{"fdtable", "fd", &o.fdtFd, 8},
		{"file", "private_data", &o.filePrivate, 8},
		{"socket", "sk", &o.socketSk, 8},
	} {
		f, err := btflayout.Member(structs[w.st], w.member)
		if err != nil {
			return offsets{}, fmt.Errorf("btf %s.%s: %w", w.st, w.member, err)
		}
		if w.size != 0 && f.Size != w.size {
			return offsets{}, fmt.Errorf("btf %s.%s: %d bytes, want %d", w.st, w.member, f.Size, w.size)
		}
		*w.dst = f.Off
		if w.dst == &o.regsFP {
			if f.Size < fpOff+8 {
				return offsets{}, fmt.Errorf("btf %s.%s: %d bytes, want at least %d", w.st, w.member, f.Size, fpOff+8)
			}
			o.regsFP += fpOff
		}
		if w.member == sysNr {
			nr = f
		}
	}
	switch nr.Size {
	case 4:
		o.sysNrSize = asm.Word
	case 8:
		o.sysNrSize = asm.DWord
	default:
		return offsets{}, fmt.Errorf("btf pt_regs.%s: %d bytes", sysNr, nr.Size)
	}
	o.regsSysNr = nr.Off
	var cast *btf.Func
	if spec.TypeByName("bpf_rdonly_cast", &cast) == nil { // Linux 6.2
		var node *btf.Struct
		if err := spec.TypeByName("llist_node", &node); err != nil {
			return offsets{}, fmt.Errorf("btf struct llist_node: %w", err)
		}
		for _, t := range []struct {
			typ btf.Type
			dst *btf.TypeID
		}{{cast, &o.rdonlyCast}, {node, &o.llistNode}, {structs["file"], &o.file}, {structs["socket"], &o.socket}} {
			id, err := spec.TypeID(t.typ)
			if err != nil {
				return offsets{}, fmt.Errorf("btf id of %s: %w", t.typ.TypeName(), err)
			}
			*t.dst = id
		}
	}
	return o, nil
}

// classify adds ErrNotSupported to errors that mean "cannot run here"
// (see ebpfsupport.Unsupported).
func classify(err error) error { return ebpfsupport.Classify(err, ErrNotSupported) }

// AddPID traces the process pid (a host tgid) from now on: every TCP
// socket it creates by connect() or accept() is recorded.
func (r *Recorder) AddPID(pid int) error {
	if r.traced[pid] {
		return nil
	}
	if len(r.traced) >= MaxPIDs {
		return fmt.Errorf("sockorigin: trace pid %d: %d processes traced already", pid, MaxPIDs)
	}
	if err := r.setPID(pid, true); err != nil {
		return fmt.Errorf("sockorigin: trace pid %d: %w", pid, err)
	}
	r.traced[pid] = true
	return nil
}

// RemovePID stops tracing pid; its recorded sockets are kept.
func (r *Recorder) RemovePID(pid int) error {
	if !r.traced[pid] {
		return nil
	}
	if err := r.setPID(pid, false); err != nil {
		return fmt.Errorf("sockorigin: untrace pid %d: %w", pid, err)
	}
	delete(r.traced, pid)
	return nil
}

// setPID sets or clears pid's bit in the pids bitmap (the programs only
// read it; this goroutine is its only writer).
func (r *Recorder) setPID(pid int, on bool) error {
	if pid <= 0 || pid >= pidWords*64 {
		return fmt.Errorf("pid out of range")
	}
	m := r.coll.Maps[pidsMap]
	var w uint64
	if err := m.Lookup(uint32(pid/64), &w); err != nil {
		return err
	}
	if on {
		w |= 1 << (pid % 64)
	} else {
		w &^= 1 << (pid % 64)
	}
	return m.Update(uint32(pid/64), w, ebpf.UpdateAny)
}

// Program returns one of the loaded programs by name (StateProgram,
// AcceptProgram), for its kernel statistics.
func (r *Recorder) Program(name string) *ebpf.Program { return r.coll.Programs[name] }

// Sample reads what the recorder holds now: the recorded sockets not yet
// closed, the closed counts, the stacks they name, and the drop count.
// Sockets get their cookie here, from a pass over the TCP sockets of each
// network namespace in netnsPaths (paths such as /proc/PID/ns/net; "" is
// the caller's own; entering another needs CAP_SYS_ADMIN), or of the
// caller's own namespace when none is given.
func (r *Recorder) Sample(netnsPaths ...string) (*Sample, error) {
	if len(netnsPaths) == 0 {
		netnsPaths = []string{""}
	}
	for _, p := range netnsPaths {
		var err error
		if p == "" {
			err = r.fillCookies()
		} else {
			err = netns.Do(p, r.fillCookies)
		}
		if err != nil {
			return nil, fmt.Errorf("sockorigin: cookies in %q: %w", p, err)
		}
	}
	s := &Sample{Closed: map[StackKey]uint64{}, Stacks: map[uint64][]uint64{}}
	keys := map[StackKey]bool{} // the stacks to read
	pair, err := r.clock()
	if err != nil {
		return nil, err
	}
	now, mono := time.Now(), pair.mono
	created := clockRate(r.opened, pair)
	grow := func(n int) { s.Sockets = make([]Socket, 0, n) }
	err = r.eachRecord(grow, func(addr uint64, v []byte) {
		ne := binary.NativeEndian
		sock := Socket{
			Addr:    addr,
			TGID:    ne.Uint32(v[valTGID:]),
			TID:     ne.Uint32(v[valTID:]),
			How:     ne.Uint32(v[valHow:]),
			Created: now.Add(min(created(ne.Uint64(v[valTime:])), mono) - mono),
			Cookie:  ne.Uint64(v[valCookie:]),
			Key:     decodeKey(v),
		}
		for i := range sock.Top {
			sock.Top[i] = ne.Uint64(v[valTop+8*i:])
		}
		s.Sockets = append(s.Sockets, sock)
		keys[sock.Key] = true
	})
	if err != nil {
		return nil, err
	}
	if err := r.readClosed(s, keys); err != nil {
		return nil, err
	}
	buf := make([]uint64, stackValSize/8) // second hash, slot, frames
	for key := range keys {
		if err := r.coll.Maps[stacksMap].Lookup(encodeKey(key), buf); err != nil {
			continue // a stack key with no stack: its frames are unknown
		}
		frames := buf[2:]
		n := 0
		for n < len(frames) && frames[n] != 0 {
			n++
		}
		s.Stacks[key.StackID] = append([]uint64(nil), frames[:n]...)
	}
	if err := r.coll.Maps[droppedMap].Lookup(uint32(0), &s.Dropped); err != nil {
		return nil, fmt.Errorf("sockorigin: read drop count: %w", err)
	}
	return s, nil
}

// eachRecord calls f with the address and record of each recorded socket:
// the sets' keys are read in batches (all of them, 2 MB, before any record:
// count is called first with how many sockets follow, so that the caller
// sizes its slice once), then the records of the sets that hold one.
func (r *Recorder) eachRecord(count func(n int), f func(addr uint64, v []byte)) error {
	const batch = 4096
	var (
		cursor ebpf.MapBatchCursor
		sets   = make([]uint32, 0, numSets)
		keys   = make([][setWays]uint64, 0, numSets)
		recs   = make([]byte, recsSize)
	)
	for len(sets) < numSets {
		at := len(sets)
		end := min(at+batch, numSets)
		n, err := r.coll.Maps[keysMap].BatchLookup(&cursor, sets[at:end], keys[at:end], nil)
		sets, keys = sets[:at+n], keys[:at+n]
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			return fmt.Errorf("sockorigin: read socket table: %w", err)
		}
		if done || n == 0 {
			break
		}
	}
	held := func(addr uint64) bool { return addr != 0 && addr&busyBit == 0 } // not free nor being written
	n := 0
	for i := range keys {
		for _, addr := range keys[i] {
			if held(addr) {
				n++
			}
		}
	}
	count(n)
	for i := range keys {
		read := false
		for w, addr := range keys[i] {
			if !held(addr) {
				continue
			}
			if !read {
				if err := r.coll.Maps[recordsMap].Lookup(sets[i], recs); err != nil {
					return fmt.Errorf("sockorigin: read socket records: %w", err)
				}
				read = true
			}
			f(addr, recs[w*valSize:(w+1)*valSize])
		}
	}
	return nil
}

// fillCookies runs the cookie iterator over the TCP sockets of the calling
// thread's network namespace.
func (r *Recorder) fillCookies() error {
	rd, err := r.cookie.Open()
	if err != nil {
		return fmt.Errorf("sockorigin: open the tcp iterator: %w", err)
	}
	defer rd.Close()
	buf := make([]byte, 4096)
	for {
		_, err := rd.Read(buf)
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sockorigin: read the tcp iterator: %w", err)
		}
	}
}

// readClosed adds the closed counts to s, by the slots given out so far,
// and their stacks to keys.
func (r *Recorder) readClosed(s *Sample, keys map[StackKey]bool) error {
	var n uint64
	if err := r.coll.Maps[nslotsMap].Lookup(uint32(0), &n); err != nil {
		return fmt.Errorf("sockorigin: read slot count: %w", err)
	}
	n = min(n, MaxStacks)
	var (
		count uint64
		k     []byte
	)
	for slot := range uint32(n) {
		if err := r.coll.Maps[closedMap].Lookup(slot, &count); err != nil {
			return fmt.Errorf("sockorigin: read closed count: %w", err)
		}
		if count == 0 {
			continue
		}
		if err := r.coll.Maps[slotKeysMap].Lookup(slot, &k); err != nil {
			return fmt.Errorf("sockorigin: read closed count's stack: %w", err)
		}
		key := decodeKey(k)
		s.Closed[key] += count
		keys[key] = true
	}
	return nil
}

// encodeKey is the stacks map's key for k: (tgid, 0, stack key).
func encodeKey(k StackKey) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint32(b, k.TGID)
	binary.NativeEndian.PutUint64(b[8:], k.StackID)
	return b
}

func decodeKey(b []byte) StackKey {
	ne := binary.NativeEndian
	return StackKey{TGID: ne.Uint32(b[valTGID:]), StackID: ne.Uint64(b[valStack:])}
}

// clockPair is jiffies and CLOCK_MONOTONIC read together by clockProgram.
type clockPair struct {
	jiffies uint64
	mono    time.Duration
}

// clock runs clockProgram.
func (r *Recorder) clock() (clockPair, error) {
	ctx := make([]byte, 16)
	if _, err := r.coll.Programs[clockProg].Run(&ebpf.RunOptions{Context: ctx, ContextOut: ctx}); err != nil {
		return clockPair{}, fmt.Errorf("sockorigin: read the kernel's clocks: %w", err)
	}
	ne := binary.NativeEndian
	return clockPair{jiffies: ne.Uint64(ctx), mono: time.Duration(ne.Uint64(ctx[8:]))}, nil
}

// clockRate returns the CLOCK_MONOTONIC time of a jiffies stamp taken
// between the pairs a and b, by their rate: the kernel's tick (HZ) is not
// known in user space. A stamp is at most a tick behind the time it was
// taken at, and so is each pair's, so the time it gives is off by at most
// a tick or two (4 ms at HZ 250). With no tick between the pairs, every
// stamp is b's time.
func clockRate(a, b clockPair) func(jiffies uint64) time.Duration {
	if b.jiffies <= a.jiffies || b.mono <= a.mono {
		return func(uint64) time.Duration { return b.mono }
	}
	perTick := float64(b.mono-a.mono) / float64(b.jiffies-a.jiffies)
	return func(j uint64) time.Duration {
		return a.mono + time.Duration(float64(int64(j-a.jiffies))*perTick)
	}
}

// attach attaches the tp_btf program name.
func (r *Recorder) attach(name string) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: r.coll.Programs[name], AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, fmt.Errorf("sockorigin: attach %s: %w", name, classify(err))
	}
	return l, nil
}

// SetAccepts attaches (on) or detaches the accept hook. Open attaches it.
// While it is detached, sockets the traced processes accept are not
// recorded, and no system call on the host pays for the hook: a program on
// raw_syscalls:sys_exit puts every task on the kernel's slower system-call
// path (getppid(2) 200 ns without it, 315 ns with it, BenchmarkSyscall on
// the machine this was written on). A caller that knows
// no traced process accepts the sockets it looks for (closewait agent
// --trace, while none holds an accepted CLOSE_WAIT socket) detaches it.
func (r *Recorder) SetAccepts(on bool) error {
	switch {
	case on && r.accept == nil:
		l, err := r.attach(AcceptProgram)
		if err != nil {
			return err
		}
		r.accept = l
	case !on && r.accept != nil:
		err := r.accept.Close()
		r.accept = nil
		if err != nil {
			return fmt.Errorf("sockorigin: detach %s: %w", AcceptProgram, err)
		}
	}
	return nil
}

// Accepts reports whether the accept hook is attached.
func (r *Recorder) Accepts() bool { return r.accept != nil }

// Close detaches and unloads the programs. It is safe to call more than once.
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	var errs []error
	if r.cookie != nil {
		errs = append(errs, r.cookie.Close())
		r.cookie = nil
	}
	for _, l := range []*link.Link{&r.state, &r.accept} {
		if *l != nil {
			errs = append(errs, (*l).Close())
			*l = nil
		}
	}
	if r.coll != nil {
		r.coll.Close()
		r.coll = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sockorigin: close: %w", err)
	}
	return nil
}
