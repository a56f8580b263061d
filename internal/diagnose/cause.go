package diagnose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/closewait/closewait/internal/snapshot"
)

// Cause is one reason a process holds CLOSE_WAIT sockets. Each cause is
// declared once, in its own file (cause_*.go), and registered there; every
// list of causes (report titles, analyze's dropped findings, the metric
// help, the `help causes` topic, the JSON docs) reads [Causes].
//
// A cause is recognised at one of three levels:
//   - from one socket's own facts (Recv-Q, direction, accept queue, tcp_info):
//     the socket causes, tried in their order;
//   - from the process, replacing a socket cause for all its sockets
//     (fd-exhausted replaces not-accepted when the fd table is full);
//   - from a part's ages or the process's growth (normal-half-close, growing).
//
// Its evidence says why in words, and its advice (next steps and fix) is
// chosen by direction × runtime × library, and by the state of the
// process's threads where that matters.
type Cause struct {
	// ID is the stable id: the JSON "cause" and the metric label.
	ID string
	// Title is the cause in a few words, for headlines.
	Title string
	// Help is one paragraph: what it means, how closewait recognises it and
	// what to do. It is the `help causes` topic's section and the docs'.
	Help string
	// NeedsRecvQ is true when the cause is told apart by Recv-Q, which some
	// saved formats (lsof without -T qs) do not show.
	NeedsRecvQ bool

	rank int // findings are ordered by rank, then size: lower first

	// socket recognises the cause from one socket (socket causes only).
	socket func(s *snapshot.Socket) bool
	// order places a socket cause among the others: lower is tried first.
	order int
	// idle estimates, for a socket of this cause, how long the connection
	// sat idle before the peer closed it (ms): the server's idle timeout.
	idle func(s *snapshot.Socket) (ms uint32, ok bool)

	// replaces names the socket cause this one replaces for a whole process
	// when applies says so (process-level causes).
	replaces string
	applies  func(p *ProcessReport) bool

	// evidence writes the lines that say why, for one part of a group.
	evidence func(v *partView) []string
	// steps are next steps that come before the runtime's commands showing
	// where the sockets are held; nil: just those commands.
	steps func(q *adviceQuery) []string
	// fix is the fix, in the runtime's idiom.
	fix func(q *adviceQuery) []string
	// stackSteps is false for causes whose next steps are not a stack dump.
	noStackSteps bool
}

// registry holds every cause, by id.
var registry = map[string]*Cause{}

// register adds a cause; called from the init of the cause's file.
func register(c *Cause) *Cause {
	if _, dup := registry[c.ID]; dup {
		panic("diagnose: cause registered twice: " + c.ID)
	}
	registry[c.ID] = c
	return c
}

// Causes returns every cause, in the order findings are reported (the
// urgent first, the harmless last), then by id.
func Causes() []*Cause {
	out := make([]*Cause, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Cause) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// LookupCause returns the cause with this id, or nil.
func LookupCause(id string) *Cause { return registry[id] }

// CauseTitle returns the title of a cause id, or the id itself when no
// cause has it.
func CauseTitle(id string) string {
	if c := registry[id]; c != nil {
		return c.Title
	}
	return id
}

// CauseIDs returns the ids of every cause, in [Causes] order, joined by
// ", ": for help texts.
func CauseIDs() string {
	var ids []string
	for _, c := range Causes() {
		ids = append(ids, c.ID)
	}
	return strings.Join(ids, ", ")
}

// CausesMarkdown is the body of the `help causes` topic: the registry's
// help, one section per cause, after intro.
func CausesMarkdown(intro string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(intro))
	b.WriteString("\n")
	for _, c := range Causes() {
		fmt.Fprintf(&b, "\n## %s\n\n%s. %s\n", c.ID, capitalize(c.Title), capitalize(c.Help))
	}
	return b.String()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// socketCauses are the causes recognised from one socket, in the order
// they are tried; causeOf returns an index into it. Built once all the
// cause files' inits have run (see causeTable).
var socketCauses []*Cause

// numCauses is len(socketCauses): a finding's part is identified by
// group*numCauses + cause index.
var numCauses int

// Indices of the socket causes whose parts the analysis treats apart: the
// accept queue (listener lines, no peers) and the pool (idle estimates).
var causeNotAccepted, causePoolIdle int

// causeTable builds socketCauses from the registry.
func causeTable() {
	socketCauses = socketCauses[:0]
	for _, c := range registry {
		if c.socket != nil {
			socketCauses = append(socketCauses, c)
		}
	}
	slices.SortFunc(socketCauses, func(a, b *Cause) int { return a.order - b.order })
	numCauses = len(socketCauses)
	causeNotAccepted = socketIndex(CauseNotAccepted)
	causePoolIdle = socketIndex(CausePoolIdle)
}

func socketIndex(id string) int {
	for i, c := range socketCauses {
		if c.ID == id {
			return i
		}
	}
	panic("diagnose: no socket cause " + id)
}

func init() { causeTable() }

// SocketCause names the cause of one CLOSE_WAIT socket from its own facts
// (accept queue, Recv-Q, direction, tcp_info): the per-socket part of a
// finding's cause, for callers that group sockets otherwise (by creation
// stack). A process-level cause (fd-exhausted) is not known from a socket.
func SocketCause(s *snapshot.Socket) string { return socketCauses[causeOf(s)].ID }

// causeOf names the cause of one CLOSE_WAIT socket from its own facts: an
// index into socketCauses. The last socket cause takes what no other does.
func causeOf(s *snapshot.Socket) int {
	for i, c := range socketCauses[:numCauses-1] {
		if c.socket(s) {
			return i
		}
	}
	return numCauses - 1
}

// effective is the cause a part of socket cause ci is reported as, for
// process p: a process-level cause may replace it.
func effective(ci int, p *ProcessReport) *Cause {
	c := socketCauses[ci]
	for _, r := range processCauses {
		if r.replaces == c.ID && r.applies(p) {
			return r
		}
	}
	return c
}

// processCauses are the causes that replace a socket cause for a process.
var processCauses []*Cause

func init() {
	for _, c := range registry {
		if c.replaces != "" {
			processCauses = append(processCauses, c)
		}
	}
	slices.SortFunc(processCauses, func(a, b *Cause) int { return strings.Compare(a.ID, b.ID) })
}

// rank orders findings: growth first (it is the urgent one), normal last.
func rank(cause string) int {
	if c := registry[cause]; c != nil {
		return c.rank
	}
	return 50
}
