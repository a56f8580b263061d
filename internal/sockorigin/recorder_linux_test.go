package sockorigin

import (
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// openOrSkip opens a recorder, skipping where the kernel or the process's
// privileges do not allow one.
func openOrSkip(t testing.TB) *Recorder {
	t.Helper()
	return openWithOrSkip(t, nil)
}

// openWithOrSkip is openOrSkip with the programs built from the kernel's
// offsets as tweak changes them.
func openWithOrSkip(t testing.TB, tweak func(*offsets)) *Recorder {
	t.Helper()
	r, err := open(tweak)
	if errors.Is(err, ErrNotSupported) && !cwtest.EBPFExpected() {
		t.Skipf("eBPF socket-origin recorder not available here (needs kernel ≥ 5.15 with BTF and CAP_BPF+CAP_PERFMON or root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// cookieOf returns the socket cookie of c, as sock_diag reports it.
func cookieOf(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	l := c.LocalAddr().(*net.TCPAddr).AddrPort()
	rm := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	var cookie uint64
	err := sockdiag.Dump(sockdiag.Request{States: sockdiag.AllStates}, func(s *sockdiag.Socket) bool {
		if s.Local.Port() == l.Port() && s.Remote.Port() == rm.Port() {
			cookie = s.Cookie
		}
		return true
	})
	if err != nil || cookie == 0 {
		t.Fatalf("no cookie for %v-%v: %v", l, rm, err)
	}
	return cookie
}

// pair dials ln and accepts the connection.
func pair(t *testing.T, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// waitCloseWait waits until c's kernel state is CLOSE_WAIT.
func waitCloseWait(t *testing.T, c net.Conn) {
	t.Helper()
	if err := cwtest.WaitState(c.(*net.TCPConn), uint8(sockdiag.CloseWait), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestRecorderConnectAcceptClose records the sockets this process makes by
// connect and accept, with a user stack each, takes their cookies when they
// enter CLOSE_WAIT, and counts them closed once closed; sockets made before
// the process was traced are not recorded. The accept program is checked
// both ways it reaches the socket: with bpf_rdonly_cast, and with the
// bpf_probe_read_kernel calls of kernels before 6.2.
func TestRecorderConnectAcceptClose(t *testing.T) {
	for _, c := range []struct {
		name  string
		tweak func(*offsets)
	}{
		{"rdonly-cast", nil},
		{"probe-read", func(o *offsets) { o.rdonlyCast = 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.tweak == nil {
				spec, err := btf.LoadKernelSpec()
				if err != nil {
					t.Skipf("no kernel BTF: %v", err)
				}
				if o, err := kernelOffsets(spec); err == nil && o.rdonlyCast == 0 {
					t.Skip("kernel without bpf_rdonly_cast (Linux < 6.2)")
				}
			}
			testConnectAcceptClose(t, openWithOrSkip(t, c.tweak))
		})
	}
}

func testConnectAcceptClose(t *testing.T, r *Recorder) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	c0, s0 := pair(t, ln) // not traced yet
	if err := r.AddPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	cA, sA := pair(t, ln) // cA will be the CLOSE_WAIT end: made by connect
	cB, sB := pair(t, ln) // sB will be: made by accept
	s0.Close()
	sA.Close()
	cB.Close()
	waitCloseWait(t, c0)
	waitCloseWait(t, cA)
	waitCloseWait(t, sB)
	want := map[uint64]uint32{cookieOf(t, cA): Connected, cookieOf(t, sB): Accepted}
	untraced := cookieOf(t, c0)

	smp, err := r.Sample()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	keyOf := map[uint32]StackKey{} // the stacks of cA and sB, by how
	for _, so := range smp.Sockets {
		if so.Cookie == untraced {
			t.Errorf("socket %d recorded, made before its process was traced", so.Cookie)
		}
		how, ok := want[so.Cookie]
		if !ok {
			continue
		}
		seen[so.Cookie] = true
		keyOf[so.How] = so.Key
		if so.How != how || so.TGID != uint32(os.Getpid()) || so.TID == 0 {
			t.Errorf("socket %d: how %d tgid %d tid %d, want %d %d", so.Cookie, so.How, so.TGID, so.TID, how, os.Getpid())
		}
		if st := smp.Stacks[so.Key.StackID]; len(st) < 3 {
			t.Errorf("socket %d: stack %x, want a user stack", so.Cookie, st)
		}
		if so.Top == [TopWords]uint64{} {
			t.Errorf("socket %d: no words from the user stack pointer", so.Cookie)
		}
		if age := time.Since(so.Created); age < 0 || age > time.Minute {
			t.Errorf("socket %d: created %v ago", so.Cookie, age)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("%d of the 2 traced CLOSE_WAIT sockets recorded with their cookie", len(seen))
	}

	// Closing every end takes each recorded socket to TCP_CLOSE: four
	// sockets (cA, sA, cB, sB), each counted closed once and forgotten.
	cA.Close()
	sB.Close()
	var closed uint64
	for range 500 {
		if smp, err = r.Sample(); err != nil {
			t.Fatal(err)
		}
		closed = 0
		for k, n := range smp.Closed {
			if k.TGID == uint32(os.Getpid()) {
				closed += n
			}
		}
		if closed >= 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if closed != 4 {
		t.Errorf("closed count %d for this process, want 4", closed)
	}
	// Each stack has its own count: the four sockets come from four
	// stacks (two calls of pair, each connecting and accepting).
	for how, key := range keyOf {
		if n := smp.Closed[key]; n != 1 {
			t.Errorf("closed count %d for the stack of how=%d, want 1", n, how)
		}
	}
	for _, so := range smp.Sockets {
		if so.TGID == uint32(os.Getpid()) {
			t.Errorf("socket %d (cookie %d) still recorded after every end closed", so.Addr, so.Cookie)
		}
	}
}

// kernelStack attaches, beside the recorder, a program that takes the user
// stack of this process's connect() the kernel's way (bpf_get_stack with
// BPF_F_USER_STACK, from the same tracepoint and registers), and returns a
// function that reads the last one taken.
func kernelStack(t *testing.T) func() []uint64 {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: MaxDepth * 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const bpfFUserStack = 1 << 8
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "cw_test_kstack", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: "inet_sock_set_state", License: License,
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord),
			asm.JNE.Imm(asm.R2, tcpClose, "exit"),
			asm.LoadMem(asm.R2, asm.R6, 16, asm.DWord),
			asm.JNE.Imm(asm.R2, tcpSynSent, "exit"),
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			asm.JNE.Imm(asm.R0, int32(os.Getpid()), "exit"),
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Reg(asm.R2, asm.R0),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R3, MaxDepth*8),
			asm.Mov.Imm(asm.R4, bpfFUserStack),
			asm.FnGetStack.Call(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return func() []uint64 {
		buf := make([]uint64, MaxDepth)
		if err := m.Lookup(uint32(0), buf); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < len(buf) && buf[n] != 0 {
			n++
		}
		return buf[:n]
	}
}

// TestWalkMatchesKernel checks the programs' own frame-pointer walk
// against the kernel's (bpf_get_stack) for the same connect(): the same
// frames, in the same order, and one stored stack for repeated calls from
// the same place.
func TestWalkMatchesKernel(t *testing.T) {
	r := openOrSkip(t)
	kstack := kernelStack(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := r.AddPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	var keys []uint64
	for i := range 3 {
		c, _ := pair(t, ln)
		want := kstack()
		smp, err := r.Sample()
		if err != nil {
			t.Fatal(err)
		}
		cookie := cookieOf(t, c)
		var got []uint64
		found := false
		for _, so := range smp.Sockets {
			if so.Cookie == cookie {
				got, found = smp.Stacks[so.Key.StackID], true
				keys = append(keys, so.Key.StackID)
			}
		}
		if !found {
			t.Fatalf("call %d: connected socket %d not recorded", i, cookie)
		}
		if len(want) < 3 || !slices.Equal(got, want) {
			t.Fatalf("call %d: walked stack\n%x\nthe kernel's\n%x", i, got, want)
		}
	}
	if keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("one call site, stack keys %x", keys)
	}
}

// TestCreatedTime checks the creation time the programs stamp in jiffies
// and Sample turns into wall time: the sockets of a pair made between two
// readings of the clock are dated between them, within two ticks (20 ms
// at HZ 100, the coarsest tick Linux has) and some slack.
func TestCreatedTime(t *testing.T) {
	r, ln := tracingSelf(t)
	time.Sleep(200 * time.Millisecond) // ticks between the recorder's first clock pair and the stamps
	before := time.Now()
	c, s := pair(t, ln)
	defer c.Close()
	defer s.Close()
	after := time.Now()
	time.Sleep(300 * time.Millisecond)
	smp, err := r.Sample()
	if err != nil {
		t.Fatal(err)
	}
	const slack = 50 * time.Millisecond
	want := map[uint64]bool{cookieOf(t, c): true, cookieOf(t, s): true}
	found := 0
	for _, so := range smp.Sockets {
		if !want[so.Cookie] {
			continue
		}
		found++
		if so.Created.Before(before.Add(-slack)) || so.Created.After(after.Add(slack)) {
			t.Errorf("socket %d created at %v, want between %v and %v (±%v)", so.Cookie,
				so.Created.Format(time.StampMicro), before.Format(time.StampMicro), after.Format(time.StampMicro), slack)
		}
	}
	if found != 2 {
		t.Fatalf("%d of the pair's 2 sockets recorded", found)
	}
}

// TestClockRate checks the conversion of jiffies stamps to CLOCK_MONOTONIC.
func TestClockRate(t *testing.T) {
	a := clockPair{jiffies: 1000, mono: 10 * time.Second}
	for _, tc := range []struct {
		name  string
		b     clockPair
		stamp uint64
		want  time.Duration
	}{
		{"HZ 250, a stamp between", clockPair{1250, 11 * time.Second}, 1125, 10500 * time.Millisecond},
		{"HZ 1000, the first pair's tick", clockPair{2000, 11 * time.Second}, 1000, 10 * time.Second},
		{"HZ 100, after the second pair", clockPair{1100, 11 * time.Second}, 1101, 11010 * time.Millisecond},
		{"no tick between the pairs", clockPair{1000, 10*time.Second + time.Millisecond}, 1000, 10*time.Second + time.Millisecond},
		{"a clock that went back", clockPair{900, 11 * time.Second}, 950, 11 * time.Second},
	} {
		if got := clockRate(a, tc.b)(tc.stamp); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSetAccepts: with the accept hook detached, a traced process's
// accepted socket is not recorded while its connected one is; attached
// again, both are.
func TestSetAccepts(t *testing.T) {
	r, ln := tracingSelf(t)
	if !r.Accepts() {
		t.Fatal("Open left the accept hook detached")
	}
	recorded := func() map[uint64]uint32 {
		t.Helper()
		smp, err := r.Sample()
		if err != nil {
			t.Fatal(err)
		}
		how := map[uint64]uint32{}
		for _, so := range smp.Sockets {
			how[so.Cookie] = so.How
		}
		return how
	}
	for _, on := range []bool{false, true, false} {
		if err := r.SetAccepts(on); err != nil {
			t.Fatal(err)
		}
		if err := r.SetAccepts(on); err != nil { // twice: no change, no error
			t.Fatal(err)
		}
		if r.Accepts() != on {
			t.Fatalf("Accepts() = %v after SetAccepts(%v)", r.Accepts(), on)
		}
		c, s := pair(t, ln)
		how := recorded()
		if got := how[cookieOf(t, c)]; got != Connected {
			t.Errorf("accepts %v: the connected socket recorded as %d, want %d", on, got, Connected)
		}
		if got, want := how[cookieOf(t, s)], map[bool]uint32{true: Accepted}[on]; got != want {
			t.Errorf("accepts %v: the accepted socket recorded as %d, want %d", on, got, want)
		}
		c.Close()
		s.Close()
	}
}

// tracingSelf opens a recorder tracing this test's process and a loopback
// listener, both closed when the test ends.
func tracingSelf(t *testing.T) (*Recorder, net.Listener) {
	t.Helper()
	r := openOrSkip(t)
	t.Cleanup(func() { r.Close() })
	if err := r.AddPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return r, ln
}
