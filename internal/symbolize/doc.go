// Package symbolize names the addresses of a user stack taken from another
// process, offline, from what is on the host: the process's memory map
// (/proc/PID/maps, under the procfs root), the files it maps, and the perf
// map a JIT runtime writes.
//
//   - Go: the pclntab (kept in stripped binaries), with inlined calls
//     expanded from the inline tree, so a leak site inside a function the
//     compiler inlined is named as that function, at its line.
//   - C, C++, Rust: ELF .symtab, else .dynsym, demangled
//     (github.com/ianlancetaylor/demangle, the demangler of pprof), and
//     the DWARF line tables when the module has them.
//   - Java, Node, Python ≥ 3.12: /tmp/perf-PID.map, which the runtime
//     writes when asked (-XX:+DumpPerfMapAtExit and jcmd PID
//     Compiler.perfmap, --perf-basic-prof, -X perf).
//
// A frame that cannot be named keeps its module and offset, and the stack
// carries one line saying what would name it.
//
// The leaf function of a stack taken at a system call is usually a libc or
// runtime wrapper without a frame pointer, so the kernel's frame-pointer
// walk skips its caller: the wrapper's return address is still on the
// stack, in the words at the stack pointer the recorder keeps. [Stack]
// puts it back: for Go from the pclntab's stack-pointer table, for native
// code by taking the first of those words that points just after a call
// instruction.
package symbolize
