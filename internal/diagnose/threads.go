package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
)

// ThreadGroup is a number of threads in the same state, waiting in the same place.
type ThreadGroup struct {
	State string // "sleeping", "running", "disk sleep", ...
	Wait  string // kernel wait channel, else the system call, else ""
	Count int
}

// ThreadSummary groups a process's threads by state and wait channel.
type ThreadSummary struct {
	Total  int
	Groups []ThreadGroup // largest first
}

var stateNames = map[byte]string{
	'R': "running", 'S': "sleeping", 'D': "in disk sleep", 'T': "stopped", 't': "stopped by a tracer",
	'Z': "zombie", 'I': "idle", 'X': "dead",
}

// SyscallName names a system call number, or returns "syscall N".
func SyscallName(n int) string {
	if s, ok := syscallNames[n]; ok {
		return s
	}
	if s, ok := archSyscallNames[n]; ok {
		return s
	}
	return "syscall " + strconv.Itoa(n)
}

// SummarizeThreads groups threads by state and by where they wait (the
// kernel wait channel, or the blocking system call when the wait channel is
// hidden).
func SummarizeThreads(ts []procscan.Thread) *ThreadSummary {
	if len(ts) == 0 {
		return nil
	}
	type key struct{ state, wait string }
	n := map[key]int{}
	for _, t := range ts {
		st := stateNames[t.State]
		if st == "" {
			st = "state " + string(t.State)
		}
		k := key{state: st}
		switch {
		case t.WChan != "" && t.Syscall >= 0:
			k.wait = t.WChan + " (" + SyscallName(t.Syscall) + ")"
		case t.WChan != "":
			k.wait = t.WChan
		case t.Syscall >= 0:
			k.wait = SyscallName(t.Syscall)
		}
		if t.State == 'R' {
			k.wait = ""
		}
		n[k]++
	}
	s := &ThreadSummary{Total: len(ts)}
	for k, c := range n {
		s.Groups = append(s.Groups, ThreadGroup{State: k.state, Wait: k.wait, Count: c})
	}
	slices.SortFunc(s.Groups, func(a, b ThreadGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.State, b.State), cmp.Compare(a.Wait, b.Wait))
	})
	return s
}

// String is the summary in words: "48 of 50 threads sleeping in
// futex_wait_queue (futex), 2 running".
func (s *ThreadSummary) String() string {
	if s == nil || s.Total == 0 {
		return ""
	}
	var parts []string
	for i, g := range s.Groups {
		if i == 4 {
			parts = append(parts, fmt.Sprintf("%d in %d other places", s.Total-sumCounts(s.Groups[:i]), len(s.Groups)-i))
			break
		}
		p := fmt.Sprintf("%d %s", g.Count, g.State)
		if i == 0 {
			p = fmt.Sprintf("%d of %d thread%s %s", g.Count, s.Total, plural(s.Total), g.State)
		}
		if g.Wait != "" {
			p += " in " + g.Wait
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func sumCounts(gs []ThreadGroup) int {
	n := 0
	for _, g := range gs {
		n += g.Count
	}
	return n
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
