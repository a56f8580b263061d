package sockevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/ebpfsupport"
	"github.com/closewait/closewait/internal/sockdiag"
)

// RingSize is the ring buffer's size: about 32,000 records (128 bytes each
// with the ring's header, on Linux 6.x x86-64), the changes a caller can
// fall behind by before Drain reports a loss and the caller dumps the
// CLOSE_WAIT set again. That is 2,000 changes a second at the agent's 15 s
// interval. The ring is
// mapped twice into the reader (for wrap-around), and the kernel maps every
// page at once: it counts twice its size in the reader's RSS (8 MB), which
// at 100k CLOSE_WAIT sockets is a tenth of the agent's memory.
const RingSize = 4 << 20

// ringPerSecond is the ring a second of drain interval needs: 2,000
// changes of 128 bytes.
const ringPerSecond = 2000 * 128

// RingFor returns the ring size for a caller that drains every interval:
// room for about 2,000 changes a second of it, a power of two between 256
// KB and RingSize (watch at 1 s: 256 KB; the agent at 15 s: RingSize).
func RingFor(interval time.Duration) uint32 {
	need := interval.Seconds() * ringPerSecond
	size := uint32(256 << 10)
	for size < RingSize && float64(size) < need {
		size *= 2
	}
	return size
}

// Feed is the loaded and attached state-change program with its ring
// buffer. Create it with Open; it is not safe for concurrent use.
type Feed struct {
	coll *ebpf.Collection
	tp   link.Link
	rd   *ringbuf.Reader
	lost *ebpf.Map
	l    layout

	lostSeen uint64
	drains   uint64
	rec      ringbuf.Record
}

// openOptions are test hooks; the zero value is what Open uses.
type openOptions struct {
	ringSize uint32
}

// Open reads the kernel BTF, builds and verifies the program and attaches it
// to the sock:inet_sock_set_state tracepoint. From then on every socket
// entering or leaving CLOSE_WAIT is queued until the next Drain.
//
// Errors wrap [ErrNotSupported] when the kernel lacks BTF, BTF tracepoints
// or the ring buffer, or the process lacks the capabilities (EPERM: then
// errors.Is(err, os.ErrPermission) also holds). Callers fall back to full
// dumps on any error.
func Open() (*Feed, error) { return open(openOptions{}) }

// OpenRing is Open with a ring buffer of size bytes (RingFor): a smaller
// ring for a caller that drains often costs less memory, mapped twice into
// the reader.
func OpenRing(size uint32) (*Feed, error) { return open(openOptions{ringSize: size}) }

func open(o openOptions) (_ *Feed, err error) {
	if o.ringSize == 0 {
		o.ringSize = RingSize
	}
	_ = rlimit.RemoveMemlock() // kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("sockevents: load kernel BTF: %w", classify(err))
	}
	l, err := kernelLayout(spec)
	if err != nil {
		return nil, fmt.Errorf("sockevents: kernel BTF layout: %w: %w", ErrNotSupported, err)
	}
	insns, err := buildProgram(l)
	if err != nil {
		return nil, fmt.Errorf("sockevents: build program: %w", err)
	}
	const progName = "cw_state"
	cs := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			ringMapName: {Name: "cw_events", Type: ebpf.RingBuf, MaxEntries: o.ringSize},
			lostMapName: {Name: "cw_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		},
		Programs: map[string]*ebpf.ProgramSpec{progName: {
			Name:         progName,
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceRawTp,
			AttachTo:     "inet_sock_set_state",
			License:      License,
			Instructions: insns,
		}},
	}
	f := &Feed{l: l}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.coll, err = ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: spec},
	})
	if err != nil {
		return nil, fmt.Errorf("sockevents: load program: %w", classify(err))
	}
	f.lost = f.coll.Maps[lostMapName]
	f.rd, err = ringbuf.NewReader(f.coll.Maps[ringMapName])
	if err != nil {
		return nil, fmt.Errorf("sockevents: ring buffer reader: %w", classify(err))
	}
	f.rd.SetDeadline(time.Unix(1, 0)) // in the past: Drain never waits
	f.tp, err = link.AttachTracing(link.TracingOptions{Program: f.coll.Programs[progName], AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, fmt.Errorf("sockevents: attach to inet_sock_set_state: %w", classify(err))
	}
	return f, nil
}

// classify adds ErrNotSupported to errors that mean "cannot run here"
// (see ebpfsupport.Unsupported).
func classify(err error) error { return ebpfsupport.Classify(err, ErrNotSupported) }

// Drain calls fn, on the calling goroutine, for every change queued since
// the last Drain (or since Open), oldest first, without waiting for more.
// fn must not retain the Event. complete is false when the ring overflowed
// since the last Drain: some changes are missing, and the caller must read
// the CLOSE_WAIT set in full again.
func (f *Feed) Drain(fn func(*Event)) (complete bool, err error) {
	if f == nil || f.rd == nil {
		return false, errors.New("sockevents: drain: feed is closed")
	}
	now, mono := time.Now(), monotonicNow()
	var ev Event
	// Bounded: at most what the ring can hold, even if the kernel keeps
	// writing while we read.
	for range RingSize/recHead + 1 {
		err := f.rd.ReadInto(&f.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("sockevents: read ring buffer: %w", err)
		}
		if err := f.l.decode(f.rec.RawSample, now, mono, &ev); err != nil {
			return false, fmt.Errorf("sockevents: %w", err)
		}
		fn(&ev)
	}
	var lost uint64
	if err := f.lost.Lookup(uint32(0), &lost); err != nil {
		return false, fmt.Errorf("sockevents: read loss counter: %w", err)
	}
	complete = lost == f.lostSeen
	f.lostSeen = lost
	f.drains++
	return complete, nil
}

// Drains counts the Drain calls that returned without error, so that a
// caller can tell whether a drain happened since it last looked.
func (f *Feed) Drains() uint64 { return f.drains }

// monotonicNow is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// decode fills ev from one record. now and mono are the same instant on the
// wall clock and on CLOCK_MONOTONIC.
func (l layout) decode(b []byte, now time.Time, mono time.Duration, ev *Event) error {
	if len(b) < recordSize(l) {
		return fmt.Errorf("record of %d bytes, want %d", len(b), recordSize(l))
	}
	ne := binary.NativeEndian
	head := b[recHead:]
	s := sockdiag.Socket{
		Family:  uint8(ne.Uint16(head[l.family.Off:])),
		Cookie:  ne.Uint64(b[recCookie:]),
		NetNS:   uint64(ne.Uint32(b[recNetNS:])),
		IfIndex: ne.Uint32(head[l.boundDevIf.Off:]),
		State:   sockdiag.State(ne.Uint32(b[recNew:])),
	}
	lport := ne.Uint16(head[l.num.Off:])
	rport := binary.BigEndian.Uint16(head[l.dport.Off:])
	var la, ra netip.Addr
	switch {
	case s.Family == unix.AF_INET:
		la = netip.AddrFrom4([4]byte(head[l.rcvSaddr.Off:][:4]))
		ra = netip.AddrFrom4([4]byte(head[l.daddr.Off:][:4]))
	case s.Family == unix.AF_INET6 && l.v6Daddr.Size == 16 && l.v6RcvSaddr.Size == 16:
		la = netip.AddrFrom16([16]byte(head[l.v6RcvSaddr.Off:][:16]))
		ra = netip.AddrFrom16([16]byte(head[l.v6Daddr.Off:][:16]))
	default:
		return fmt.Errorf("record with address family %d", s.Family)
	}
	s.Local = netip.AddrPortFrom(sockdiag.NormalizeAddr(la), lport)
	s.Remote = netip.AddrPortFrom(sockdiag.NormalizeAddr(ra), rport)
	*ev = Event{
		Old:    sockdiag.State(ne.Uint32(b[recOld:])),
		New:    s.State,
		Time:   now.Add(time.Duration(ne.Uint64(b[recTime:])) - mono),
		Socket: s,
	}
	return nil
}

// Close detaches and unloads the program. It is safe to call more than once.
func (f *Feed) Close() error {
	if f == nil {
		return nil
	}
	var errs []error
	if f.tp != nil {
		errs = append(errs, f.tp.Close())
		f.tp = nil
	}
	if f.rd != nil {
		errs = append(errs, f.rd.Close())
		f.rd = nil
	}
	if f.coll != nil {
		f.coll.Close()
		f.coll = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sockevents: close: %w", err)
	}
	return nil
}
