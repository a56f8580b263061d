package history

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrDamaged is wrapped by the errors of Open and CheckFile when the file is
// a bbolt store whose structure is broken (truncated, overwritten, torn).
// Such a file is never written to.
var ErrDamaged = errors.New("damaged store")

// ErrNotHistory is wrapped when the file is not a closewait history store.
var ErrNotHistory = errors.New("not a closewait history file")

// The on-disk layout of a bbolt file (format version 2, stable since bbolt
// 1.0), as far as verifyFile reads it. bbolt memory-maps the file and
// trusts what it finds: a page past the end of the file faults (SIGBUS)
// and a broken page header trips an assertion in a goroutine nobody can
// recover. verifyFile reads the same structures with plain reads, checks
// every bound first, and so tells a damaged file from a good one before
// bbolt maps it.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elemSize         = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaChecksumOff  = 56 // the meta's checksum covers its first 56 bytes
	metaSize         = 64
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagMeta         = 0x04
	flagFreelist     = 0x10
	leafBucket       = 0x01
	noFreelist       = ^uint64(0)
	maxProblems      = 8
)

type boltMeta struct {
	pageSize       uint32
	root, freelist uint64
	hwm, txid      uint64
}

// readMeta reads the meta page at off; ok is false when it does not
// validate (magic, version, checksum), and magic tells whether the magic
// number at least was there.
func readMeta(f io.ReaderAt, off int64) (m boltMeta, ok, magic bool) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return m, false, false
	}
	le := binary.LittleEndian
	p := b[pageHeaderSize:]
	magic = le.Uint32(p[0:]) == boltMagic
	h := fnv.New64a()
	h.Write(p[:metaChecksumOff])
	if !magic || le.Uint32(p[4:]) != boltVersion || le.Uint64(p[metaChecksumOff:]) != h.Sum64() {
		return m, false, magic
	}
	m = boltMeta{
		pageSize: le.Uint32(p[8:]),
		root:     le.Uint64(p[16:]),
		freelist: le.Uint64(p[32:]),
		hwm:      le.Uint64(p[40:]),
		txid:     le.Uint64(p[48:]),
	}
	return m, true, true
}

// verifier walks one bbolt file.
type verifier struct {
	f        *os.File
	size     int64
	meta     boltMeta
	ps       int64
	state    []uint8 // per page: 0 unseen, 1 reachable, 2 free
	problems []string
	more     int
}

func (v *verifier) problem(format string, args ...any) {
	if len(v.problems) < maxProblems {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	} else {
		v.more++
	}
}

// err returns the problems found as one ErrDamaged error, or nil.
func (v *verifier) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	msg := v.problems[0]
	if n := len(v.problems) - 1 + v.more; n > 0 {
		msg += fmt.Sprintf(" (and %d more problems)", n)
	}
	return fmt.Errorf("%w: %s", ErrDamaged, msg)
}

// verifyFile checks the structure of the bbolt file f the way bbolt's
// Tx.Check does (meta pages, every page reachable from the root or free and
// never both, page headers, element bounds, key order) without mapping it,
// so that no damage can fault or panic. It returns nil, or an error wrapping
// ErrDamaged or ErrNotHistory that names the first problems.
func verifyFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	v := &verifier{f: f, size: fi.Size()}
	m0, ok0, magic0 := readMeta(f, 0)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.pageSize)
	}
	m1, ok1, magic1 := readMeta(f, ps)
	switch {
	case !magic0 && !magic1:
		return ErrNotHistory
	case !ok0 && !ok1:
		return fmt.Errorf("%w: both meta pages are invalid (bad checksum or version)", ErrDamaged)
	}
	// bbolt uses the valid meta page with the higher transaction id.
	v.meta = m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		v.meta = m1
	}
	m := v.meta
	v.ps = int64(m.pageSize)
	if v.ps < 512 || v.ps > 1<<20 || v.ps&(v.ps-1) != 0 {
		return fmt.Errorf("%w: page size %d", ErrDamaged, v.ps)
	}
	if m.hwm < 2 || m.hwm > uint64(v.size/v.ps) {
		return fmt.Errorf("%w: the file is %d bytes but its meta page says %d pages of %d bytes (truncated?)", ErrDamaged, v.size, m.hwm, v.ps)
	}
	if m.root < 2 || m.root >= m.hwm {
		return fmt.Errorf("%w: root page %d outside the file's %d pages", ErrDamaged, m.root, m.hwm)
	}
	v.state = make([]uint8, m.hwm)
	v.state[0], v.state[1] = 1, 1
	if m.freelist != noFreelist {
		v.readFreelist()
		if len(v.problems) > 0 {
			return v.err()
		}
	}
	v.walk(m.root, nil, nil, 0)
	for id := uint64(2); id < m.hwm && len(v.problems) == 0; id++ {
		if v.state[id] == 0 {
			v.problem("page %d is neither reachable nor free", id)
		}
	}
	return v.err()
}

// page reads page id with its overflow pages, after checking that they lie
// within the high-water mark.
func (v *verifier) page(id uint64) ([]byte, bool) {
	if id < 2 || id >= v.meta.hwm {
		v.problem("page %d outside the file's %d pages", id, v.meta.hwm)
		return nil, false
	}
	head := make([]byte, v.ps)
	if _, err := v.f.ReadAt(head, int64(id)*v.ps); err != nil {
		v.problem("page %d: %v", id, err)
		return nil, false
	}
	le := binary.LittleEndian
	if got := le.Uint64(head); got != id {
		v.problem("page %d identifies itself as page %d", id, got)
		return nil, false
	}
	over := uint64(le.Uint32(head[12:]))
	if id+over >= v.meta.hwm {
		v.problem("page %d: %d overflow pages run past the file's %d pages", id, over, v.meta.hwm)
		return nil, false
	}
	if over == 0 {
		return head, true
	}
	p := make([]byte, int64(over+1)*v.ps)
	if _, err := v.f.ReadAt(p, int64(id)*v.ps); err != nil {
		v.problem("page %d: %v", id, err)
		return nil, false
	}
	return p, true
}

// mark records pages id..id+over as reachable (free=false) or free.
func (v *verifier) mark(id uint64, over uint32, free bool) bool {
	for i := id; i <= id+uint64(over); i++ {
		switch {
		case v.state[i] == 2 && free:
			v.problem("page %d is freed twice", i)
			return false
		case v.state[i] == 2:
			v.problem("page %d is in use and free", i)
			return false
		case v.state[i] == 1 && free:
			v.problem("page %d is in use and free", i)
			return false
		case v.state[i] == 1:
			v.problem("page %d is referenced twice", i)
			return false
		}
		if free {
			v.state[i] = 2
		} else {
			v.state[i] = 1
		}
	}
	return true
}

func (v *verifier) readFreelist() {
	id := v.meta.freelist
	p, ok := v.page(id)
	if !ok {
		return
	}
	le := binary.LittleEndian
	if fl := le.Uint16(p[8:]); fl != flagFreelist {
		v.problem("freelist page %d has type %#x", id, fl)
		return
	}
	if !v.mark(id, le.Uint32(p[12:]), false) {
		return
	}
	n, start := uint64(le.Uint16(p[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count overflowed into the first element
		n, start = le.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(p))-start)/8 {
		v.problem("freelist page %d: %d ids do not fit in the page", id, n)
		return
	}
	for i := range n {
		fid := le.Uint64(p[start+8*i:])
		if fid < 2 || fid >= v.meta.hwm {
			v.problem("freelist names page %d, outside the file's %d pages", fid, v.meta.hwm)
			return
		}
		if !v.mark(fid, 0, true) {
			return
		}
	}
}

// elements checks that the n elements of the node at p (a page or an inline
// bucket's page) lie within it and returns each key and, for leaves, value
// and flags.
type elem struct {
	flags uint32
	key   []byte
	value []byte
	child uint64
}

func (v *verifier) elements(where string, p []byte) ([]elem, bool, bool) {
	le := binary.LittleEndian
	if len(p) < pageHeaderSize {
		v.problem("%s: shorter than a page header", where)
		return nil, false, false
	}
	flags, n := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	leaf := flags == flagLeaf
	if !leaf && flags != flagBranch {
		v.problem("%s has type %#x, want a branch or leaf page", where, flags)
		return nil, false, false
	}
	if pageHeaderSize+n*elemSize > len(p) {
		v.problem("%s: %d elements do not fit in the page", where, n)
		return nil, false, false
	}
	if !leaf && n == 0 {
		v.problem("%s: a branch page with no elements", where)
		return nil, false, false
	}
	out := make([]elem, n)
	for i := range n {
		off := pageHeaderSize + i*elemSize
		e := p[off : off+elemSize]
		var pos, ksize, vsize uint64
		if leaf {
			out[i].flags = le.Uint32(e)
			pos, ksize, vsize = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		} else {
			pos, ksize = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:]))
			out[i].child = le.Uint64(e[8:])
		}
		start := uint64(off) + pos
		if ksize == 0 || start+ksize+vsize > uint64(len(p)) {
			v.problem("%s: element %d (key %d bytes, value %d) runs outside the page", where, i, ksize, vsize)
			return nil, false, false
		}
		out[i].key = p[start : start+ksize]
		out[i].value = p[start+ksize : start+ksize+vsize]
		if i > 0 && bytes.Compare(out[i-1].key, out[i].key) >= 0 {
			v.problem("%s: keys out of order at element %d", where, i)
			return nil, false, false
		}
	}
	return out, leaf, true
}

// walk checks the subtree at page id, whose keys must lie in [lo, hi).
func (v *verifier) walk(id uint64, lo, hi []byte, depth int) {
	if depth > 64 {
		v.problem("page %d: the tree is deeper than 64 levels", id)
		return
	}
	p, ok := v.page(id)
	if !ok || !v.mark(id, binary.LittleEndian.Uint32(p[12:]), false) {
		return
	}
	v.node(fmt.Sprintf("page %d", id), p, lo, hi, depth)
}

func (v *verifier) node(where string, p []byte, lo, hi []byte, depth int) {
	elems, leaf, ok := v.elements(where, p)
	if !ok {
		return
	}
	if len(elems) > 0 && (lo != nil && bytes.Compare(elems[0].key, lo) < 0 || hi != nil && bytes.Compare(elems[len(elems)-1].key, hi) >= 0) {
		v.problem("%s: keys outside the range of its parent", where)
		return
	}
	for i, e := range elems {
		if len(v.problems) > 0 {
			return
		}
		if !leaf {
			next := hi
			if i+1 < len(elems) {
				next = elems[i+1].key
			}
			v.walk(e.child, e.key, next, depth+1)
			continue
		}
		if e.flags&leafBucket == 0 {
			continue
		}
		if len(e.value) < bucketHeaderSize {
			v.problem("%s: bucket %q has a %d-byte header", where, e.key, len(e.value))
			return
		}
		root := binary.LittleEndian.Uint64(e.value)
		if root != 0 {
			v.walk(root, nil, nil, depth+1)
			continue
		}
		// An inline bucket: its leaf page follows the header, and holds no
		// buckets of its own.
		inner := e.value[bucketHeaderSize:]
		in := fmt.Sprintf("inline bucket %q in %s", e.key, where)
		ielems, ileaf, ok := v.elements(in, inner)
		if !ok {
			return
		}
		if !ileaf {
			v.problem("%s is not a leaf", in)
			return
		}
		for _, ie := range ielems {
			if ie.flags&leafBucket != 0 {
				v.problem("%s holds a bucket", in)
				return
			}
		}
	}
}
