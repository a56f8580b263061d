package procscan

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Thread is what the kernel shows about one thread of a process: its
// scheduler state, the kernel function it sleeps in and the system call it
// is blocked in.
type Thread struct {
	TID   int
	Comm  string // thread name (Java and Go name their threads)
	State byte   // R running, S sleeping, D disk sleep, T stopped, Z zombie, …
	// WChan is the kernel function the thread sleeps in (from
	// /proc/PID/task/TID/wchan), e.g. "futex_wait_queue"; empty when it is
	// running or the kernel hides it.
	WChan string
	// Syscall is the number of the system call the thread is blocked in,
	// from /proc/PID/task/TID/syscall; -1 when it is not in a system call
	// (running) and -2 when unknown (no permission).
	Syscall int
}

// Threads reads the threads of a process, at most limit of them (0: all).
// Per-thread files of a thread that exits meanwhile are skipped; wchan and
// syscall need ptrace access (root, or the same user), else they are left
// unknown.
func (fs FS) Threads(pid, limit int) ([]Thread, error) {
	dir := fs.pidPath(pid, "task")
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("threads of %d: %w", pid, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("threads of %d: %w", pid, err)
	}
	out := make([]Thread, 0, len(names))
	for _, n := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		tid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fs.pidPath(pid, "task", n, "stat"))
		if err != nil {
			continue // exited
		}
		t, ok := ParseThreadStat(b)
		if !ok {
			continue
		}
		t.TID = tid
		if w, err := os.ReadFile(fs.pidPath(pid, "task", n, "wchan")); err == nil {
			if s := string(bytes.TrimSpace(w)); s != "0" {
				t.WChan = s
			}
		}
		t.Syscall = -2
		if sc, err := os.ReadFile(fs.pidPath(pid, "task", n, "syscall")); err == nil {
			t.Syscall = ParseSyscall(sc)
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseThreadStat reads the name and state from the text of
// /proc/PID/task/TID/stat. The name may hold spaces and parentheses, so the
// state is the first field after the last ')'.
func ParseThreadStat(b []byte) (Thread, bool) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Thread{}, false
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 1 || len(f[0]) != 1 {
		return Thread{}, false
	}
	return Thread{Comm: string(b[open+1 : end]), State: f[0][0]}, true
}

// ParseSyscall reads the text of /proc/PID/task/TID/syscall: the number of
// the blocking system call, -1 for "running" (or a thread not in a system
// call), -2 when it cannot be read.
func ParseSyscall(b []byte) int {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return -2
	}
	if string(f[0]) == "running" {
		return -1
	}
	n, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return -2
	}
	return n
}
