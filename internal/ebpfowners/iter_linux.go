package ebpfowners

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// MaxWanted is the capacity of the in-kernel map of wanted inodes used by
// [Iterator.EachWanted]; larger sets are filtered in Go instead.
const MaxWanted = 1 << 20

// readSize is the buffer of one read(2) on the iterator. The kernel fills at
// most its seq_file buffer (8 pages) per read.
const readSize = 64 << 10

// Iterator is a loaded task_file program attached as a BPF iterator; each
// [Iterator.Each] is one pass over every task's fd table. Loading costs tens
// of milliseconds (kernel BTF parsing, verification) and a pass only the
// reads, so keep one Iterator alive in long-running modes. It is safe for
// concurrent use.
type Iterator struct {
	coll *ebpf.Collection
	iter *link.Iter

	mu         sync.Mutex // serialises EachWanted: guards the map and inKernel
	wanted     *ebpf.Map  // nil when the filtered program did not load
	filtered   *link.Iter
	inKernel   map[uint64]struct{} // contents of wanted
	filterColl *ebpf.Collection
	filterErr  error // why the filtered program is not available
}

// loadOptions are test hooks; the zero value is what Load uses.
type loadOptions struct {
	attachTo string                    // iterator target; "" is "task_file"
	patch    func(l *layout)           // changes the layout read from BTF
	prog     progOptions               // maxOff
	noFilter bool                      // skip the filtered program
	spec     func() (*btf.Spec, error) // kernel BTF source
}

// Load reads the kernel BTF, builds and verifies the program, and attaches
// it as a task_file iterator. Errors say which step failed; they wrap
// [ErrNotSupported] when the kernel lacks BTF or the task_file iterator, or
// the process lacks the capabilities (then errors.Is(err, os.ErrPermission)
// also holds). A verifier rejection is returned wrapped but is not
// ErrNotSupported. Callers should fall back to the /proc walk on any error.
func Load() (*Iterator, error) {
	return load(loadOptions{})
}

func load(o loadOptions) (_ *Iterator, err error) {
	if o.attachTo == "" {
		o.attachTo = "task_file"
	}
	cache := btf.NewCache()
	if o.spec == nil {
		o.spec = cache.Kernel
	}
	spec, err := o.spec()
	if err != nil {
		return nil, fmt.Errorf("ebpfowners: load kernel BTF: %w", classify(err))
	}
	l, err := kernelLayout(spec)
	if err != nil {
		return nil, fmt.Errorf("ebpfowners: kernel BTF layout: %w: %w", ErrNotSupported, err)
	}
	if o.patch != nil {
		o.patch(&l)
	}

	it := &Iterator{}
	defer func() {
		if err != nil {
			it.Close()
		}
	}()
	it.coll, it.iter, err = loadAttach(l, o, false, cache, spec)
	if err != nil {
		return nil, err
	}
	if o.noFilter {
		it.filterErr = errors.New("filtered program not loaded")
		return it, nil
	}
	// The filtered program is an optimisation: without it EachWanted
	// filters in Go.
	it.filterColl, it.filtered, it.filterErr = loadAttach(l, o, true, cache, spec)
	if it.filterErr == nil {
		it.wanted = it.filterColl.Maps[wantedMapName]
		it.inKernel = make(map[uint64]struct{})
	}
	return it, nil
}

// loadAttach builds, loads and attaches one program variant.
func loadAttach(l layout, o loadOptions, filter bool, cache *btf.Cache, spec *btf.Spec) (*ebpf.Collection, *link.Iter, error) {
	po := o.prog
	po.filter = filter
	insns, err := buildProgram(l, po)
	if err != nil {
		return nil, nil, fmt.Errorf("ebpfowners: build program: %w", err)
	}
	const progName = "cw_owners"
	cs := &ebpf.CollectionSpec{
		Programs: map[string]*ebpf.ProgramSpec{progName: {
			Name:         progName,
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceIter,
			AttachTo:     o.attachTo,
			License:      License,
			Instructions: insns,
		}},
	}
	if filter {
		cs.Maps = map[string]*ebpf.MapSpec{wantedMapName: {
			Name:       "cw_wanted",
			Type:       ebpf.Hash,
			KeySize:    8,
			ValueSize:  1,
			MaxEntries: MaxWanted,
			Flags:      unix.BPF_F_NO_PREALLOC,
		}}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		Cache:    cache,
		Programs: ebpf.ProgramOptions{KernelTypes: spec},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ebpfowners: load %s iterator program: %w", o.attachTo, classify(err))
	}
	iter, err := link.AttachIter(link.IterOptions{Program: coll.Programs[progName]})
	if err != nil {
		coll.Close()
		return nil, nil, fmt.Errorf("ebpfowners: attach %s iterator: %w", o.attachTo, classify(err))
	}
	return coll, iter, nil
}

// classify adds ErrNotSupported to errors that mean "cannot run here":
// missing BTF or iterator, bpf(2) missing or refused (EPERM: no
// capabilities). A verifier rejection (EACCES with a log) is not one: it
// means the program or its layout is wrong for this kernel.
func classify(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return err
	}
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, btf.ErrNotSupported) ||
		errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// Each calls fn once for every socket fd of every process (thread-group
// leader) visible in the reader's pid namespace, with the host pid, the fd
// number and the socket inode: the (pid, fd, inode) triples readlink over
// every /proc/PID/fd would give, as one consistent-per-task pass. A socket
// shared by several processes or fds is reported for each of them. fn must
// not retain anything; it runs on the calling goroutine.
func (it *Iterator) Each(fn func(pid, fd int, inode uint64)) error {
	if it == nil || it.iter == nil {
		return errors.New("ebpfowners: each: iterator is closed")
	}
	return read(it.iter, fn)
}

// EachWanted is [Iterator.Each] restricted to the inodes in wanted. The
// filter runs in the kernel (a hash map updated with the difference from the
// previous call), so unwanted sockets cost neither emission nor decoding;
// when the filtered program could not be loaded, or wanted holds more than
// [MaxWanted] inodes, it filters in Go. An empty wanted set calls fn never.
func (it *Iterator) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	if it == nil || it.iter == nil {
		return errors.New("ebpfowners: each wanted: iterator is closed")
	}
	if len(wanted) == 0 {
		return nil
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.wanted == nil || len(wanted) > MaxWanted {
		return read(it.iter, func(pid, fd int, ino uint64) {
			if _, ok := wanted[ino]; ok {
				fn(pid, fd, ino)
			}
		})
	}
	if err := it.syncWanted(wanted); err != nil {
		return fmt.Errorf("ebpfowners: update wanted inodes: %w", err)
	}
	return read(it.filtered, fn)
}

// syncWanted makes the kernel map hold exactly wanted.
func (it *Iterator) syncWanted(wanted map[uint64]struct{}) error {
	var del, put []uint64
	for ino := range it.inKernel {
		if _, ok := wanted[ino]; !ok {
			del = append(del, ino)
		}
	}
	for ino := range wanted {
		if _, ok := it.inKernel[ino]; !ok {
			put = append(put, ino)
		}
	}
	if len(del) > 0 {
		n, err := it.wanted.BatchDelete(del, nil)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			// Fall back to one syscall per key (kernels without batch ops).
			for _, k := range del[n:] {
				if err := it.wanted.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					it.resetWanted()
					return err
				}
			}
		}
		for _, k := range del {
			delete(it.inKernel, k)
		}
	}
	if len(put) > 0 {
		vals := make([]uint8, len(put))
		for i := range vals {
			vals[i] = 1
		}
		n, err := it.wanted.BatchUpdate(put, vals, nil)
		if err != nil {
			for _, k := range put[n:] {
				if err := it.wanted.Put(k, uint8(1)); err != nil {
					it.resetWanted()
					return err
				}
			}
		}
		for _, k := range put {
			it.inKernel[k] = struct{}{}
		}
	}
	return nil
}

// resetWanted forgets what the kernel map holds after a failed update, so the
// next call deletes and re-adds everything it can.
func (it *Iterator) resetWanted() {
	var k uint64
	var v uint8
	var keys []uint64
	entries := it.wanted.Iterate()
	for entries.Next(&k, &v) {
		keys = append(keys, k)
	}
	it.inKernel = make(map[uint64]struct{}, len(keys))
	for _, k := range keys {
		it.inKernel[k] = struct{}{}
	}
}

// read runs one pass of the iterator l and decodes its records.
func read(l *link.Iter, fn func(pid, fd int, inode uint64)) error {
	r, err := l.Open()
	if err != nil {
		return fmt.Errorf("ebpfowners: open iterator: %w", err)
	}
	defer r.Close()
	buf := make([]byte, readSize)
	have := 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		done := have - have%RecordSize
		for off := 0; off < done; off += RecordSize {
			rec := buf[off : off+RecordSize]
			fn(int(binary.NativeEndian.Uint32(rec[0:4])),
				int(binary.NativeEndian.Uint32(rec[4:8])),
				binary.NativeEndian.Uint64(rec[8:16]))
		}
		have = copy(buf, buf[done:have])
		if err == io.EOF {
			if have != 0 {
				return fmt.Errorf("ebpfowners: read iterator: %d trailing bytes", have)
			}
			return nil
		}
		if errors.Is(err, unix.EAGAIN) {
			// The kernel visited MAX_ITER_OBJECTS (1M) fds in this read
			// without output; the position is kept, read on.
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ebpfowners: read iterator: %w", err)
		}
	}
}

// Close detaches and unloads the programs. It is safe to call more than once.
func (it *Iterator) Close() error {
	if it == nil {
		return nil
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	var errs []error
	for _, l := range []**link.Iter{&it.iter, &it.filtered} {
		if *l != nil {
			errs = append(errs, (*l).Close())
			*l = nil
		}
	}
	for _, c := range []**ebpf.Collection{&it.coll, &it.filterColl} {
		if *c != nil {
			(*c).Close()
			*c = nil
		}
	}
	it.wanted = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ebpfowners: close: %w", err)
	}
	return nil
}
