package diagnose

import (
	"strings"
	"time"
)

// partView is what a cause's evidence is written from: one part of a
// group (the sockets of one group with one socket cause), in words and
// numbers.
type partView struct {
	p         *ProcessReport
	of        string // "143 of 150 sockets on port 8080", "all 6 sockets to 10.0.3.7:5432", "the socket …"
	where     string // "on port 8080", "to 10.0.3.7:5432"
	have      string // "have" or "has"
	wait      string // "wait" or "waits"
	inbound   bool
	n         int
	groupSize int
	// Unread data besides the FIN: how many sockets hold some, the most
	// and the least any holds (bytes, without the FIN).
	withData   int
	maxQ, minQ uint32
	idleMed    float64 // seconds: the median idle estimate, 0 without one
	idleMin    float64 // the shortest
	idleN      int     // sockets with an estimate
	goodbye    int     // sockets whose data came with the FIN (pool-idle)
	listeners  []string
	threads    string
	blocked    bool // most threads wait on a lock (see threadsBlocked)
}

// adviceQuery is what a cause's advice is chosen by.
type adviceQuery struct {
	runtime string // "java", …, "other"
	inbound bool
	where   string // "on port 8080", "to 10.0.3.7:5432", "to 35 other remotes"
	// libraries detected in the process ("hikaricp", "pgx", …), sorted.
	libraries []string
	// blocked: most of the process's threads wait on a lock (a blocked pool).
	blocked bool
	// evict is the idle eviction to advise (below the server's idle
	// timeout); 0 when no estimate exists.
	evict time.Duration
	// serverIdle is the server's estimated idle timeout; 0 when unknown.
	serverIdle time.Duration
	fill       filler
	p          *ProcessReport
}

// has reports whether library lib was detected.
func (q *adviceQuery) has(lib string) bool {
	for _, l := range q.libraries {
		if l == lib {
			return true
		}
	}
	return false
}

// byRuntime are advice lines per runtime; "other" is the fallback and is
// required (the registry test checks every cause × runtime).
type byRuntime map[string][]string

// lines returns the runtime's lines (or "other"'s), with placeholders filled.
func (t byRuntime) lines(q *adviceQuery) []string {
	ls, ok := t[q.runtime]
	if !ok {
		ls = t["other"]
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = q.fill.fill(l)
	}
	return out
}

// runtimes are the runtimes closewait gives specific advice for.
var runtimes = []string{"java", "node", "python", "go", "ruby", "dotnet", "other"}

// filler fills the placeholders of the advice tables: {pid}, {user} and
// {ports}. (A strings.Replacer does the same, at a cost that showed when
// many processes are judged.)
type filler struct{ pid, user, ports string }

// fill replaces the placeholders in s, left to right.
func (f filler) fill(s string) string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 64)
	for ; i >= 0; i = strings.IndexByte(s, '{') {
		b.WriteString(s[:i])
		s = s[i:]
		var v string
		switch {
		case strings.HasPrefix(s, "{pid}"):
			v = f.pid
		case strings.HasPrefix(s, "{user}"):
			v = f.user
		case strings.HasPrefix(s, "{ports}"):
			v = f.ports
		default:
			b.WriteByte('{')
			s = s[1:]
			continue
		}
		b.WriteString(v)
		s = s[strings.IndexByte(s, '}')+1:]
	}
	b.WriteString(s)
	return b.String()
}

// threadsBlocked reports whether most of a process's threads wait on a
// lock or a condition (futex, a kernel mutex or rwsem) rather than in
// accept, poll or a read: workers that cannot get to their sockets. Go and
// Node schedule their work on a few threads that always sleep in futex
// when idle, so for them the picture says nothing.
func threadsBlocked(ts *ThreadSummary, runtime string) bool {
	if ts == nil || ts.Total < 3 || runtime == "go" || runtime == "node" {
		return false
	}
	locked := 0
	for _, g := range ts.Groups {
		w := g.Wait
		if g.State != "running" && (strings.Contains(w, "futex") || strings.Contains(w, "mutex") || strings.Contains(w, "rwsem") || strings.Contains(w, "lock")) {
			locked += g.Count
		}
	}
	return locked*3 >= ts.Total*2
}
