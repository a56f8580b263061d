package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// goTable reads a Go binary's pclntab (Go 1.20 and later, the layout the
// runtime uses: runtime/symtab.go), stripped binaries included: function
// names, file:line, and the inline tree, so that a PC inside a function
// the compiler inlined is named as that function at its own line, followed
// by the functions it was inlined into at their call lines. debug/gosym
// gives the innermost line but names the outer function, and knows no
// inline tree.
type goTable struct {
	ptrSize   int
	textStart uint64
	funcnames []byte
	cutab     []byte
	filetab   []byte
	pctab     []byte
	ftab      []byte // the pclntable: functab, then the _func records
	nfunc     int
	order     binary.ByteOrder
	// gofunc is the address of go:func.*, the base of funcdata offsets
	// (where the inline trees are); 0 when it could not be found, and
	// then inlined calls are not expanded.
	gofunc uint64
	file   *elf.File
	// quantum is the instruction size unit of pc deltas: 1 on amd64, 4 on arm64.
	quantum uint64
	secs    map[*elf.Section][]byte
}

// pcHeader magic numbers (runtime/symtab.go).
const (
	go120magic = 0xfffffff1
)

// FUNCDATA and PCDATA indexes (internal/abi/symtab.go).
const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	funcFixedSize      = 44 // _func up to and with nfuncdata
	inlinedCallSize    = 16
)

var errNotGo = errors.New("not a Go binary")

// openGoTable reads the pclntab of f, or returns errNotGo.
func openGoTable(f *elf.File) (*goTable, error) {
	sec := f.Section(".gopclntab")
	if sec == nil {
		sec = f.Section(".data.rel.ro.gopclntab") // some PIE builds
	}
	if sec == nil {
		return nil, errNotGo
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .gopclntab: %w", err)
	}
	t, err := parsePclntab(data, f.ByteOrder)
	if err != nil {
		return nil, err
	}
	if text := f.Section(".text"); t.textStart == 0 && text != nil {
		// Go 1.26 no longer stores it in the header (the runtime reads
		// moduledata.text): the start of .text.
		t.textStart = text.Addr
	}
	t.file, t.quantum, t.secs = f, 1, map[*elf.Section][]byte{}
	if f.Machine == elf.EM_AARCH64 {
		t.quantum = 4
	}
	t.gofunc = findGofunc(f, sec.Addr, t)
	return t, nil
}

func parsePclntab(data []byte, order binary.ByteOrder) (*goTable, error) {
	if len(data) < 8 || order.Uint32(data) != go120magic {
		return nil, fmt.Errorf("pclntab: unsupported version (Go 1.20 or later is read)")
	}
	ptr := int(data[7])
	if ptr != 4 && ptr != 8 {
		return nil, fmt.Errorf("pclntab: pointer size %d", ptr)
	}
	word := func(i int) uint64 {
		off := 8 + i*ptr
		if off+ptr > len(data) {
			return 0
		}
		if ptr == 8 {
			return order.Uint64(data[off:])
		}
		return uint64(order.Uint32(data[off:]))
	}
	t := &goTable{ptrSize: ptr, order: order, nfunc: int(word(0)), textStart: word(2)}
	slice := func(i int) []byte {
		off := word(i)
		if off > uint64(len(data)) {
			return nil
		}
		return data[off:]
	}
	t.funcnames, t.cutab, t.filetab, t.pctab, t.ftab = slice(3), slice(4), slice(5), slice(6), slice(7)
	if t.ftab == nil || len(t.ftab) < (t.nfunc+1)*8 {
		return nil, errors.New("pclntab: truncated function table")
	}
	return t, nil
}

// findGofunc finds runtime.firstmoduledata (in a stripped binary too: it
// is the word in .go.module (Go 1.26) or .noptrdata equal to the
// pclntab's address) and returns its gofunc field, checked against the
// section addresses it also records.
func findGofunc(f *elf.File, pclnAddr uint64, t *goTable) uint64 {
	syms, _ := f.Symbols()
	for _, s := range syms { // unstripped: the symbol itself
		if s.Name == "go:func.*" || s.Name == "go.func.*" {
			return s.Value
		}
	}
	nd := f.Section(".noptrdata")
	text := f.Section(".text")
	if nd == nil || text == nil || t.ptrSize != 8 {
		return 0
	}
	// Field offsets of moduledata (Go 1.20 to 1.26, 64-bit): pcHeader 0,
	// six slices, findfunctab 152, minpc 160, maxpc 168, text 176, etext
	// 184, noptrdata 192, ..., rodata 312, gofunc 320.
	const (
		offText      = 176
		offNoptrdata = 192
		offGofunc    = 320
	)
	for _, name := range []string{".go.module", ".noptrdata"} {
		sec := f.Section(name)
		if sec == nil {
			continue
		}
		data, err := sec.Data()
		if err != nil {
			continue
		}
		for off := 0; off+offGofunc+8 <= len(data); off += 8 {
			if t.order.Uint64(data[off:]) != pclnAddr {
				continue
			}
			m := data[off:]
			if t.order.Uint64(m[offText:]) != text.Addr || t.order.Uint64(m[offNoptrdata:]) != nd.Addr {
				continue
			}
			return t.order.Uint64(m[offGofunc:])
		}
	}
	return 0
}

// funcAt returns the offset of the _func record covering pc in t.ftab.
func (t *goTable) funcAt(pc uint64) (int, bool) {
	if pc < t.textStart {
		return 0, false
	}
	off := uint32(pc - t.textStart)
	ent := func(i int) uint32 { return t.order.Uint32(t.ftab[i*8:]) }
	i := sort.Search(t.nfunc, func(i int) bool { return ent(i) > off }) - 1
	if i < 0 || off >= ent(t.nfunc) {
		return 0, false
	}
	fo := int(t.order.Uint32(t.ftab[i*8+4:]))
	if fo+funcFixedSize > len(t.ftab) {
		return 0, false
	}
	return fo, true
}

// field reads the n-th 4-byte field of the _func at fo.
func (t *goTable) field(fo, n int) uint32 { return t.order.Uint32(t.ftab[fo+4*n:]) }

func (t *goTable) name(off uint32) string {
	if int(off) >= len(t.funcnames) {
		return ""
	}
	b := t.funcnames[off:]
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// pcvalue decodes the pc-value table at off for targetpc (runtime.pcvalue).
func (t *goTable) pcvalue(off uint32, entry, targetpc uint64) int32 {
	if off == 0 || int(off) >= len(t.pctab) {
		return -1
	}
	p := t.pctab[off:]
	pc, val := entry, int32(-1)
	first := true
	for len(p) > 0 {
		uv, n := binary.Uvarint(p)
		if n <= 0 || (uv == 0 && !first) {
			break
		}
		first = false
		p = p[n:]
		val += int32(-(uint32(uv) & 1) ^ (uint32(uv) >> 1))
		pd, n := binary.Uvarint(p)
		if n <= 0 {
			break
		}
		p = p[n:]
		pc += pd * t.quantum
		if targetpc < pc {
			return val
		}
	}
	return -1
}

// fileLine returns the source position of pc in the function at fo.
func (t *goTable) fileLine(fo int, entry, pc uint64) (string, int) {
	fileno := t.pcvalue(t.field(fo, 5), entry, pc)
	line := t.pcvalue(t.field(fo, 6), entry, pc)
	cu := t.field(fo, 8)
	file := ""
	if fileno >= 0 {
		idx := (int(cu) + int(fileno)) * 4
		if idx+4 <= len(t.cutab) {
			if fo := t.order.Uint32(t.cutab[idx:]); fo != ^uint32(0) && int(fo) < len(t.filetab) {
				b := t.filetab[fo:]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				file = string(b)
			}
		}
	}
	return file, int(line)
}

// spDelta is the stack pointer's distance from its value at the function's
// entry, at pc: 0 while the function has not made its frame.
func (t *goTable) spDelta(pc uint64) (int32, bool) {
	fo, ok := t.funcAt(pc)
	if !ok {
		return 0, false
	}
	entry := t.textStart + uint64(t.field(fo, 0))
	return t.pcvalue(t.field(fo, 4), entry, pc), true
}

// frames names pc, innermost first: the inlined calls at pc, then the
// function that holds them.
func (t *goTable) frames(pc uint64) []Frame {
	fo, ok := t.funcAt(pc)
	if !ok {
		return nil
	}
	entry := t.textStart + uint64(t.field(fo, 0))
	outer := t.name(t.field(fo, 1))
	npcdata := int(t.field(fo, 7))
	nfuncdata := int(t.ftab[fo+43])
	var inl []byte
	var inlIdx uint32
	if npcdata > pcdataInlTreeIndex && nfuncdata > funcdataInlTree && t.gofunc != 0 {
		inlIdx = t.field(fo, 11+pcdataInlTreeIndex)
		fd := t.field(fo, 11+npcdata+funcdataInlTree)
		if fd != ^uint32(0) {
			inl = t.readAt(t.gofunc + uint64(fd))
		}
	}
	var out []Frame
	for range 100 { // bounded: a corrupt tree cannot loop
		file, line := t.fileLine(fo, entry, pc)
		ix := int32(-1)
		if inl != nil {
			ix = t.pcvalue(inlIdx, entry, pc)
		}
		if ix < 0 || (int(ix)+1)*inlinedCallSize > len(inl) {
			return append(out, Frame{Function: outer, File: file, Line: line})
		}
		call := inl[int(ix)*inlinedCallSize:]
		out = append(out, Frame{Function: t.name(t.order.Uint32(call[4:])), File: file, Line: line, Inlined: true})
		pc = entry + uint64(int64(int32(t.order.Uint32(call[8:]))))
	}
	return out
}

// readAt returns the bytes of the file's loaded image from addr to the end
// of its section.
func (t *goTable) readAt(addr uint64) []byte {
	for _, s := range t.file.Sections {
		if s.Type == elf.SHT_NOBITS || addr < s.Addr || addr >= s.Addr+s.Size {
			continue
		}
		data, ok := t.secs[s]
		if !ok {
			data, _ = s.Data()
			t.secs[s] = data
		}
		if addr-s.Addr >= uint64(len(data)) {
			return nil
		}
		return data[addr-s.Addr:]
	}
	return nil
}
