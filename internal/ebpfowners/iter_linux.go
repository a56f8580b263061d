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
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/ebpfsupport"
)

// readSize is the buffer of one read(2) on the iterator. The kernel fills at
// most its seq_file buffer (8 pages) per read.
const readSize = 64 << 10

// Iterator is a loaded task_file program attached as a BPF iterator; each
// [Iterator.Each] is one pass over every task's fd table. Loading costs tens
// of milliseconds (kernel BTF parsing, verification) and a pass only the
// reads, so keep one Iterator alive in long-running modes. Passes may run
// concurrently ([Iterator.EachWanted] calls are serialised); Close must not
// race with a pass.
type Iterator struct {
	coll *ebpf.Collection
	iter *link.Iter

	mu         sync.Mutex   // serialises EachWanted: guards the bitmap
	bitmap     *ebpf.Memory // the filter's words, mmap'd; nil without the filtered program
	words      []byte       // the bitmap being built, native-endian u64 words
	filtered   *link.Iter   // the filtered program's iterator
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

// Load reads the kernel BTF (once), builds and verifies the program and its
// filtered variant, and attaches them as task_file iterators. On kernels
// before 5.11, which charge BPF memory to RLIMIT_MEMLOCK, it raises that
// limit of the process to infinity.
//
// Errors say which step failed. They wrap [ErrNotSupported] when the kernel
// lacks BTF or the task_file iterator, or the process lacks the capabilities
// (EPERM: then errors.Is(err, os.ErrPermission) also holds). A verifier
// rejection is returned wrapped, with the verifier's last lines, but is not
// ErrNotSupported. Callers should fall back to the /proc walk on any error.
func Load() (*Iterator, error) {
	return load(loadOptions{})
}

func load(o loadOptions) (_ *Iterator, err error) {
	if o.attachTo == "" {
		o.attachTo = "task_file"
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; this is a
	// no-op on later ones. A failure shows up as EPERM from the load.
	_ = rlimit.RemoveMemlock()
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
		it.bitmap, it.filterErr = it.filterColl.Maps[wantedMapName].Memory()
		if it.filterErr != nil {
			it.filterErr = fmt.Errorf("ebpfowners: mmap wanted bitmap: %w", it.filterErr)
			it.bitmap = nil
		} else {
			it.words = make([]byte, filterWords*8)
		}
	}
	return it, nil
}

// progName is the programs' name in their collections.
const progName = "cw_owners"

// loadAttach builds, loads and attaches one program variant.
func loadAttach(l layout, o loadOptions, filter bool, cache *btf.Cache, spec *btf.Spec) (*ebpf.Collection, *link.Iter, error) {
	po := o.prog
	po.filter = filter
	insns, err := buildProgram(l, po)
	if err != nil {
		return nil, nil, fmt.Errorf("ebpfowners: build program: %w", err)
	}
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
			Type:       ebpf.Array,
			KeySize:    4,
			ValueSize:  8,
			MaxEntries: filterWords,
			Flags:      unix.BPF_F_MMAPABLE,
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

// classify adds ErrNotSupported to errors that mean "cannot run here"
// (see ebpfsupport.Unsupported).
func classify(err error) error { return ebpfsupport.Classify(err, ErrNotSupported) }

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
// filter runs in the kernel, as a bitmap of inode numbers modulo 2^23
// written through mmap before the pass, so most unwanted sockets cost
// neither emission nor decoding; the few that share a bit with a wanted
// inode are dropped in Go. When the filtered program could not be loaded it
// filters in Go. An empty wanted set calls fn never. Calls are serialised.
func (it *Iterator) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	if it == nil || it.iter == nil {
		return errors.New("ebpfowners: each wanted: iterator is closed")
	}
	if len(wanted) == 0 {
		return nil
	}
	exact := func(pid, fd int, ino uint64) {
		if _, ok := wanted[ino]; ok {
			fn(pid, fd, ino)
		}
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.bitmap == nil {
		return read(it.iter, exact)
	}
	clear(it.words)
	for ino := range wanted {
		bit := ino % filterBits
		off := bit / 64 * 8
		w := binary.NativeEndian.Uint64(it.words[off:])
		binary.NativeEndian.PutUint64(it.words[off:], w|1<<(bit%64))
	}
	if _, err := it.bitmap.WriteAt(it.words, 0); err != nil {
		return fmt.Errorf("ebpfowners: write wanted bitmap: %w", err)
	}
	return read(it.filtered, exact)
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
	it.bitmap = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ebpfowners: close: %w", err)
	}
	return nil
}
