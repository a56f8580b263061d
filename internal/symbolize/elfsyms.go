package symbolize

import (
	"debug/dwarf"
	"debug/elf"
	"sort"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// elfTable names addresses of a native ELF module (C, C++, Rust): function
// names from .symtab, else .dynsym, demangled; file:line from the DWARF line
// tables when the module has them.
type elfTable struct {
	syms  []elfSym // sorted by address
	lines []lineRow
	// debug tells whether the module had a .symtab (not stripped).
	symtab bool
}

type elfSym struct {
	addr, size uint64
	name       string
}

type lineRow struct {
	addr uint64
	file string
	line int
	end  bool // the row ends a sequence: no line from here
}

func openELFTable(f *elf.File) *elfTable {
	t := &elfTable{}
	syms, err := f.Symbols()
	t.symtab = err == nil && len(syms) > 0
	dyn, _ := f.DynamicSymbols()
	for _, list := range [][]elf.Symbol{syms, dyn} {
		for _, s := range list {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
				continue
			}
			t.syms = append(t.syms, elfSym{addr: s.Value, size: s.Size, name: s.Name})
		}
	}
	sort.SliceStable(t.syms, func(i, j int) bool { return t.syms[i].addr < t.syms[j].addr })
	if d, err := f.DWARF(); err == nil {
		t.lines = readLines(d)
	}
	return t
}

// readLines flattens every compilation unit's line table into rows sorted
// by address.
func readLines(d *dwarf.Data) []lineRow {
	var rows []lineRow
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		lr, err := d.LineReader(e)
		if err != nil || lr == nil {
			r.SkipChildren()
			continue
		}
		var le dwarf.LineEntry
		for lr.Next(&le) == nil {
			row := lineRow{addr: le.Address, line: le.Line, end: le.EndSequence}
			if le.File != nil {
				row.file = le.File.Name
			}
			rows = append(rows, row)
		}
		r.SkipChildren()
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].addr < rows[j].addr })
	return rows
}

// function returns the symbol covering addr and where it starts.
func (t *elfTable) function(addr uint64) (string, uint64, bool) {
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].addr > addr }) - 1
	if i < 0 {
		return "", 0, false
	}
	s := t.syms[i]
	if s.size != 0 && addr >= s.addr+s.size {
		return "", 0, false
	}
	return demangleName(s.name), s.addr, true
}

// line returns the source position of addr from DWARF.
func (t *elfTable) line(addr uint64) (string, int) {
	i := sort.Search(len(t.lines), func(i int) bool { return t.lines[i].addr > addr }) - 1
	if i < 0 || t.lines[i].end {
		return "", 0
	}
	return t.lines[i].file, t.lines[i].line
}

func (t *elfTable) frames(addr uint64) []Frame {
	name, _, ok := t.function(addr)
	file, line := t.line(addr)
	if !ok && file == "" {
		return nil
	}
	return []Frame{{Function: name, File: file, Line: line}}
}

// demangleName turns C++ (Itanium) and Rust (legacy and v0) symbols into
// source names, dropping parameter lists and Rust hashes; others are kept.
func demangleName(s string) string {
	if !strings.HasPrefix(s, "_Z") && !strings.HasPrefix(s, "_R") {
		return s
	}
	return demangle.Filter(s, demangle.NoParams, demangle.NoTemplateParams)
}
