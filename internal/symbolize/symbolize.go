package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/procscan"
)

// Frame is one named (or unnamed) frame of a stack, innermost first.
type Frame struct {
	Function string `json:"function"` // empty when unnamed
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Module   string `json:"module"`            // the mapped file, or "[anon]" for JIT code, "[unknown]"
	Offset   uint64 `json:"offset"`            // the address's offset in the module's file (or mapping)
	Inlined  bool   `json:"inlined,omitempty"` // inlined into the frame that follows
}

// Named reports whether the frame has a function name.
func (f Frame) Named() bool { return f.Function != "" }

// String is "function file:line module", or "module+0xoffset".
func (f Frame) String() string {
	if !f.Named() {
		return fmt.Sprintf("%s+%#x", filepath.Base(f.Module), f.Offset)
	}
	s := f.Function
	if f.File != "" {
		s += " " + f.File + ":" + strconv.Itoa(f.Line)
	}
	return s + " (" + filepath.Base(f.Module) + ")"
}

// Result is one symbolised stack.
type Result struct {
	Frames []Frame
	// Unnamed counts the frames without a function name.
	Unnamed int
	// Hint says, in one line, what would name the unnamed frames or show
	// the missing callers; empty when nothing is missing.
	Hint string
}

// Symbolizer names stacks of processes. It caches what it reads from each
// module and process; not safe for concurrent use.
type Symbolizer struct {
	fs    procscan.FS
	files map[fileID]*module // by the file itself: processes of one binary share it, a binary replaced at its path is read anew
	procs map[int]*process
	sweep uint64 // Sweep's count, the age of modules
}

// fileID names a file whatever the path (and mount namespace) it is opened
// through.
type fileID struct{ dev, ino uint64 }

// New returns a Symbolizer reading processes under procfs root (the
// --path.procfs flag; "" is /proc).
func New(root string) *Symbolizer {
	return &Symbolizer{fs: procscan.NewFS(root), files: map[fileID]*module{}, procs: map[int]*process{}}
}

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end, off uint64
	exec            bool
	path            string
}

type process struct {
	maps    []mapping
	perfMap *perfMap           // nil when the process has none
	mods    map[string]*module // by mapped path: module without building the path through /proc/PID/root
	err     error
}

// module is a mapped ELF file and what names its addresses.
type module struct {
	f     *elf.File
	data  *os.File
	goTab *goTable
	elf   *elfTable
	err   error
	id    fileID
	used  uint64 // the Sweep count when it was last used
	swept bool   // closed by Sweep: a process still holding it reads the file again
}

func (s *Symbolizer) process(pid int) *process {
	if p, ok := s.procs[pid]; ok {
		return p
	}
	p := &process{}
	s.procs[pid] = p
	b, err := os.ReadFile(s.fs.Path(strconv.Itoa(pid), "maps"))
	if err != nil {
		p.err = fmt.Errorf("read memory map of %d: %w", pid, err)
		return p
	}
	p.maps = parseMaps(b)
	p.perfMap = s.readPerfMap(pid)
	return p
}

// parseMaps reads /proc/PID/maps: "start-end perms offset dev inode path".
func parseMaps(b []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		m := mapping{start: start, end: end, off: off, exec: strings.Contains(f[1], "x")}
		if len(f) >= 6 {
			m.path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

func (p *process) find(pc uint64) (mapping, bool) {
	i := sort.Search(len(p.maps), func(i int) bool { return p.maps[i].start > pc }) - 1
	if i < 0 || pc >= p.maps[i].end {
		return mapping{}, false
	}
	return p.maps[i], true
}

// fileBacked reports whether the mapping is of a file (not anonymous,
// [stack], [vdso], memfd or deleted JIT code).
func (m mapping) fileBacked() bool {
	return strings.HasPrefix(m.path, "/") && !strings.HasSuffix(m.path, " (deleted)")
}

// module opens the file of m as the process sees it (through its root).
// It is called for every frame and socket: the process's own cache comes
// first (until Forget), then the modules shared by the file's identity.
func (s *Symbolizer) module(pid int, m mapping) *module {
	p := s.process(pid)
	mod, ok := p.mods[m.path]
	if !ok || mod.swept {
		mod = s.open(s.fs.Path(strconv.Itoa(pid), "root")+m.path, m.path)
		if p.mods == nil {
			p.mods = map[string]*module{}
		}
		p.mods[m.path] = mod
	}
	mod.used = s.sweep
	return mod
}

// open reads the ELF file at path (else at host, the same file as the host
// sees it), or returns the module already read from that file: one stat
// when it was (the agent looks each process's modules up again every
// scan, after Forget).
func (s *Symbolizer) open(path, host string) *module {
	for _, p := range []string{path, host} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			if shared := s.files[fileID{dev: uint64(st.Dev), ino: st.Ino}]; shared != nil {
				return shared
			}
			break
		}
	}
	mod := &module{}
	fh, err := os.Open(path)
	if err != nil {
		fh, err = os.Open(host) // no access to the process's root: the host's file
	}
	if err != nil {
		mod.err = err
		return mod
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		fh.Close() // a module is kept (and closed) by its identity only
		mod.err = fmt.Errorf("stat %s: %w", fh.Name(), err)
		return mod
	}
	mod.id = fileID{dev: uint64(st.Dev), ino: st.Ino}
	if shared := s.files[mod.id]; shared != nil {
		fh.Close()
		return shared
	}
	s.files[mod.id] = mod
	f, err := elf.NewFile(fh)
	if err != nil {
		fh.Close()
		mod.err = err
		return mod
	}
	mod.f, mod.data = f, fh
	if gt, err := openGoTable(f); err == nil {
		mod.goTab = gt
	}
	mod.elf = openELFTable(f)
	return mod
}

// vaddr converts a file offset of the module into its link-time address.
func (mod *module) vaddr(foff uint64) (uint64, bool) {
	for _, p := range mod.f.Progs {
		if p.Type == elf.PT_LOAD && foff >= p.Off && foff < p.Off+p.Filesz {
			return foff - p.Off + p.Vaddr, true
		}
	}
	return 0, false
}

// bytesAt reads n bytes of the module's file ending at file offset foff.
func (mod *module) bytesBefore(foff uint64, n int) []byte {
	if foff < uint64(n) {
		return nil
	}
	b := make([]byte, n)
	if _, err := mod.data.ReadAt(b, int64(foff)-int64(n)); err != nil {
		return nil
	}
	return b
}

// Close releases the files the Symbolizer opened.
func (s *Symbolizer) Close() {
	for _, m := range s.files {
		if m.data != nil {
			m.data.Close()
		}
	}
	clear(s.files)
	clear(s.procs)
}

// Sweep closes and forgets the modules that went unused between more than
// keep successive Sweeps: a long-lived Symbolizer (the agent's) would
// otherwise keep every binary it ever read, each version of a redeployed
// one included, open and parsed. A process holding a swept module reads
// the file again when it needs it.
func (s *Symbolizer) Sweep(keep uint64) {
	defer func() { s.sweep++ }()
	for id, m := range s.files {
		if s.sweep-m.used > keep {
			if m.data != nil {
				m.data.Close()
			}
			m.swept = true
			delete(s.files, id)
		}
	}
}

// Forget drops what is cached about pid (its memory map and perf map), to be
// read again on the next Stack.
func (s *Symbolizer) Forget(pid int) { delete(s.procs, pid) }

// Stack names the stack pcs of process pid: pcs[0] is where the thread
// was, the others return addresses (as the kernel's frame-pointer walk
// found them, with LeafCaller's addition).
func (s *Symbolizer) Stack(pid int, pcs []uint64) Result {
	p := s.process(pid)
	var res Result
	if p.err != nil {
		for _, pc := range pcs {
			res.Frames = append(res.Frames, Frame{Module: "[unknown]", Offset: pc})
		}
		res.Unnamed = len(pcs)
		res.Hint = "the process's memory map could not be read (" + p.err.Error() + "): run as root while it is alive"
		return res
	}
	var missing hintSet
	for i, pc := range pcs {
		lookup := pc
		if i > 0 {
			lookup = pc - 1 // a return address: the call is just before it
		}
		fr := s.frame(p, pid, lookup, &missing)
		for j := range fr {
			if i > 0 && fr[j].Offset != 0 {
				fr[j].Offset++ // report the address itself, not the lookup
			}
		}
		res.Frames = append(res.Frames, fr...)
	}
	for _, f := range res.Frames {
		if !f.Named() {
			res.Unnamed++
		}
		if h, ok := interpreters[f.Function]; ok && !contains(missing.interpreted, h) {
			missing.interpreted = append(missing.interpreted, h)
		}
	}
	if len(pcs) <= 2 && !missing.goCode {
		missing.shortStack = true
	}
	res.Hint = missing.String()
	return res
}

// hintSet collects why frames were left unnamed.
type hintSet struct {
	noSymbols   []string // modules without symbols
	jit         bool     // code outside any file and no perf map
	shortStack  bool     // the frame-pointer walk stopped early
	astray      bool     // a "return address" outside any code: the walk left the frame chain
	interpreted []string // what would name the functions an interpreter frame stands for
	goCode      bool
}

// interpreters are the frames of language runtimes' interpreters, each
// standing for whichever function it runs, with what would name that
// function.
var interpreters = map[string]string{
	"Builtins_InterpreterEntryTrampoline": "node --perf-basic-prof --interpreted-frames-native-stack would name the JavaScript functions under Builtins_InterpreterEntryTrampoline",
	"Interpreter":                         "a JVM's perf map names compiled methods only: the Interpreter frames are methods not compiled yet (jcmd PID Thread.print names them)",
	"_PyEval_EvalFrameDefault":            "python3.12 or later with -X perf would name the Python functions under _PyEval_EvalFrameDefault",
}

func (h hintSet) String() string {
	var parts []string
	if len(h.noSymbols) > 0 {
		parts = append(parts, "debug symbols would name "+strings.Join(h.noSymbols, ", ")+" (install its debug-symbols package, or build without stripping)")
	}
	if h.jit {
		parts = append(parts, "a perf map would name JIT code (java -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit or jcmd PID Compiler.perfmap, node --perf-basic-prof, python3.12 -X perf)")
	}
	parts = append(parts, h.interpreted...)
	switch {
	case h.astray:
		parts = append(parts, "the frame-pointer walk went astray (an address outside any code): a frame-pointer build (-fno-omit-frame-pointer) of the frame before it would show the callers")
	case h.shortStack:
		parts = append(parts, "a frame-pointer build (-fno-omit-frame-pointer) would show the callers")
	}
	return strings.Join(parts, "; ")
}

// frame names one address, possibly as several frames (inlined calls).
func (s *Symbolizer) frame(p *process, pid int, pc uint64, h *hintSet) []Frame {
	m, ok := p.find(pc)
	if !ok || !m.fileBacked() {
		mod := "[anon]"
		if ok && m.path != "" {
			mod = m.path
		}
		if p.perfMap != nil {
			if name, ok := p.perfMap.lookup(pc); ok {
				return []Frame{{Function: name, Module: p.perfMap.path, Offset: pc}}
			}
		}
		off := pc
		if ok {
			off = pc - m.start
		}
		switch {
		case ok && m.exec && m.path != "[vdso]":
			h.jit = true
		case !ok || !m.exec:
			h.astray = true // data, a stack, the heap, or nothing: not code a call returns to
		}
		return []Frame{{Module: mod, Offset: off}}
	}
	foff := pc - m.start + m.off
	base := Frame{Module: m.path, Offset: foff}
	mod := s.module(pid, m)
	if mod.err != nil {
		return []Frame{base}
	}
	va, ok := mod.vaddr(foff)
	if !ok {
		return []Frame{base}
	}
	var fr []Frame
	if mod.goTab != nil {
		fr = mod.goTab.frames(va)
		if fr != nil {
			h.goCode = true
		}
	}
	if fr == nil {
		fr = mod.elf.frames(va)
	}
	if fr == nil {
		if !mod.elf.symtab && !contains(h.noSymbols, filepath.Base(m.path)) {
			h.noSymbols = append(h.noSymbols, filepath.Base(m.path))
		}
		return []Frame{base}
	}
	for i := range fr {
		fr[i].Module, fr[i].Offset = m.path, foff
	}
	return fr
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LeafCaller returns the return address of the leaf function's caller,
// to put back after pcs[0] (a stack of process pid, innermost first), when
// the frame-pointer walk skipped it (see the package comment); top are the
// words at the thread's stack pointer. ok is false when nothing is
// missing.
func (s *Symbolizer) LeafCaller(pid int, pcs []uint64, top []uint64) (ra uint64, ok bool) {
	p := s.process(pid)
	if p.err != nil || len(pcs) == 0 || len(top) == 0 {
		return 0, false
	}
	ra, ok = s.leafReturn(p, pid, pcs[0], top)
	if !ok || (len(pcs) > 1 && pcs[1] == ra) {
		return 0, false
	}
	return ra, true
}

// leafReturn finds the return address of the function holding pc in the
// words at the stack pointer, when that function keeps no frame pointer.
func (s *Symbolizer) leafReturn(p *process, pid int, pc uint64, top []uint64) (uint64, bool) {
	m, ok := p.find(pc)
	if !ok || !m.fileBacked() {
		return 0, false
	}
	mod := s.module(pid, m)
	if mod.err != nil {
		return 0, false
	}
	va, ok := mod.vaddr(pc - m.start + m.off)
	if !ok {
		return 0, false
	}
	if mod.goTab != nil {
		if d, ok := mod.goTab.spDelta(va); ok {
			// Go: the frame pointer is saved with the frame, so only a
			// function that has not made one (an assembly system call
			// wrapper) hides its caller, whose return address is at SP.
			if d != 0 {
				return 0, false
			}
			return top[0], top[0] != 0
		}
	}
	if _, start, ok := mod.elf.function(va); ok && keepsFramePointer(mod, m, start) {
		return 0, false
	}
	for _, w := range top {
		if s.afterCall(p, pid, w) {
			return w, true
		}
	}
	return 0, false
}

// keepsFramePointer reports whether the function starting at the link
// address start begins by saving the frame pointer (push %rbp, after an
// optional endbr64), as -fno-omit-frame-pointer code does.
func keepsFramePointer(mod *module, m mapping, start uint64) bool {
	if runtime.GOARCH != "amd64" {
		return false
	}
	for _, p := range mod.f.Progs {
		if p.Type != elf.PT_LOAD || start < p.Vaddr || start >= p.Vaddr+p.Filesz {
			continue
		}
		b := make([]byte, 5)
		if _, err := mod.data.ReadAt(b, int64(start-p.Vaddr+p.Off)); err != nil {
			return false
		}
		if bytes.HasPrefix(b, []byte{0xf3, 0x0f, 0x1e, 0xfa}) { // endbr64
			b = b[4:]
		}
		return b[0] == 0x55 // push %rbp
	}
	return false
}

// afterCall reports whether addr, in an executable file mapping of the
// process, directly follows a call instruction: what a return address does.
func (s *Symbolizer) afterCall(p *process, pid int, addr uint64) bool {
	m, ok := p.find(addr)
	if !ok || !m.exec || !m.fileBacked() {
		return false
	}
	mod := s.module(pid, m)
	if mod.err != nil {
		return false
	}
	b := mod.bytesBefore(addr-m.start+m.off, 7)
	if b == nil {
		return false
	}
	switch runtime.GOARCH {
	case "amd64":
		return b[2] == 0xe8 || // call rel32
			(b[5] == 0xff && b[6]&0x38 == 0x10 && b[6]>>6 == 3) || // call *%reg
			(b[4] == 0xff && b[5]&0x38 == 0x10 && b[5]>>6 == 1) || // call *disp8(%reg)
			(b[1] == 0xff && b[2]&0x38 == 0x10 && (b[2]>>6 == 2 || b[2]&0xc7 == 0x05)) // call *disp32(%reg), *disp32(%rip)
	case "arm64":
		w := uint32(b[3]) | uint32(b[4])<<8 | uint32(b[5])<<16 | uint32(b[6])<<24
		return w&0xfc000000 == 0x94000000 || w&0xfffffc1f == 0xd63f0000 // bl, blr
	}
	return false
}
