package leakcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// ErrNotTCP is the error of a state lookup on a connection that is not a
// TCP socket (a Unix socket, an in-memory pipe). Such connections are
// tracked but never reported as leaks.
var ErrNotTCP = errors.New("leakcheck: not a TCP connection")

// ErrNotSupported is returned on systems where the TCP state of a socket
// cannot be read (every system but Linux).
var ErrNotSupported = errors.New("leakcheck: TCP state lookup not supported on this system")

// tcpCloseWait is TCP_CLOSE_WAIT, include/net/tcp_states.h.
const tcpCloseWait = 8

// tcpStates names the kernel's TCP states, include/net/tcp_states.h.
var tcpStates = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
	5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
	9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

func stateName(s uint8) string {
	if int(s) < len(tcpStates) && tcpStates[s] != "" {
		return tcpStates[s]
	}
	return fmt.Sprintf("STATE_%d", s)
}

// Causes of a leaked connection, the same ids as closewait's findings.
const (
	// CauseMissingClose: the program read the connection up to EOF (the
	// peer's FIN) and never closed it: a missing Close on the EOF or
	// error path.
	CauseMissingClose = "missing-close"
	// CauseAbandonedUnread: the program never read the connection after
	// the FIN: it forgot the connection, or the goroutine holding it is
	// blocked elsewhere (for a pooled HTTP client connection, typically
	// a response body that was never read to the end nor closed).
	CauseAbandonedUnread = "abandoned-unread"
)

// Origins of the stack that a [Group] is keyed by, from the most to the
// least specific. The first one a connection has with frames outside
// net, net/http and leakcheck is used.
const (
	// OriginReadError: the latest Read that returned an error (io.EOF
	// when the peer closed). For a leak, the code that saw the error
	// and returned without Close.
	OriginReadError = "read-error"
	// OriginRequest: the latest HTTP request made on the connection
	// through [Tracker.RoundTripper].
	OriginRequest = "request"
	// OriginFirstRead: the first Read of the connection.
	OriginFirstRead = "first-read"
	// OriginCreated: where the connection was accepted or dialed.
	OriginCreated = "created"
	// OriginUnknown: no stack was recorded (not sampled) or none has
	// frames outside the infrastructure packages.
	OriginUnknown = "unknown"
)

// Report is the result of one check of every tracked connection.
type Report struct {
	// Time is when the check started.
	Time time.Time `json:"time"`
	// Tracked is the number of live tracked connections checked.
	Tracked int `json:"tracked"`
	// States counts the checked connections by kernel TCP state name.
	States map[string]int `json:"states"`
	// CloseWait is the number of connections in CLOSE_WAIT: the leaks.
	// It excludes the Young ones.
	CloseWait int `json:"close_wait"`
	// Young is the number of connections in CLOSE_WAIT for less than
	// [Options.MinAge], left out of CloseWait and Groups.
	Young int `json:"young,omitempty"`
	// Errors counts connections whose state could not be read, other
	// than those closed during the check.
	Errors int `json:"errors"`
	// Groups holds the CLOSE_WAIT connections grouped by the code that
	// last handled them, largest group first.
	Groups []Group `json:"groups"`
}

// Group is a set of leaked (CLOSE_WAIT) connections attributed to the same
// code.
type Group struct {
	// Site is the top frame of Stack, "function (file:line)": the line
	// to look at. "(no stack)" when none was recorded.
	Site string `json:"site"`
	// Origin says which moment Stack was recorded at: one of the
	// Origin constants.
	Origin string `json:"origin"`
	// Stack is the attributed stack without runtime, net, net/http and
	// leakcheck frames, innermost first.
	Stack []Frame `json:"stack"`
	// Created is where the connections were created, without
	// infrastructure frames, when that differs from Stack.
	Created []Frame `json:"created,omitempty"`
	// Count is the number of connections in the group.
	Count int `json:"count"`
	// Inbound (accepted) and Outbound (dialed) split Count by direction.
	Inbound  int `json:"inbound"`
	Outbound int `json:"outbound"`
	// Causes counts the connections by cause (CauseMissingClose,
	// CauseAbandonedUnread).
	Causes map[string]int `json:"causes"`
	// OldestCloseWait is the longest time a connection of the group has
	// spent in CLOSE_WAIT, from tcp_info's tcpi_last_ack_recv (the
	// peer's FIN is the last ACK an idle CLOSE_WAIT socket receives).
	OldestCloseWait time.Duration `json:"-"`
	// OldestConn is the age of the oldest connection of the group.
	OldestConn time.Duration `json:"-"`
	// LongestIdle is the longest time a connection of the group has gone
	// without a read or write by the program (since its creation if it
	// never had one).
	LongestIdle time.Duration `json:"-"`
	// Remotes lists up to 8 distinct peer addresses.
	Remotes []string `json:"remotes"`
	// Advice is the next step, in words.
	Advice string `json:"advice"`
}

const maxRemotes = 8

// MarshalJSON encodes g with its durations as seconds
// (oldest_close_wait_seconds, oldest_conn_seconds, longest_idle_seconds).
func (g Group) MarshalJSON() ([]byte, error) {
	type plain Group
	return json.Marshal(struct {
		plain
		OldestCloseWait float64 `json:"oldest_close_wait_seconds"`
		OldestConn      float64 `json:"oldest_conn_seconds"`
		LongestIdle     float64 `json:"longest_idle_seconds"`
	}{plain(g), g.OldestCloseWait.Seconds(), g.OldestConn.Seconds(), g.LongestIdle.Seconds()})
}

// Report checks every tracked connection's TCP state with the kernel and
// returns the connections in CLOSE_WAIT grouped by the code that last
// handled them. Its cost is one getsockopt per tracked connection plus
// symbolization of the distinct stacks of the leaked ones.
func (t *Tracker) Report() *Report {
	rep := &Report{Time: time.Now(), States: map[string]int{}}
	sym := symbolizer{}
	groups := map[string]*Group{}
	now := rep.Time.UnixNano()
	for _, r := range t.snapshot() {
		c := r.w.Value()
		if c == nil {
			continue // collected; its cleanup will untrack it
		}
		state, lastAck, err := tcpState(c)
		if err != nil {
			if !r.isRemoved() {
				rep.Errors++
			}
			continue
		}
		rep.Tracked++
		rep.States[stateName(state)]++
		if state != tcpCloseWait {
			continue
		}
		if lastAck < t.opts.MinAge {
			rep.Young++
			continue
		}
		rep.CloseWait++
		origin, stack := sym.attribute(r)
		key := origin + "\x00" + framesKey(stack)
		g := groups[key]
		if g == nil {
			g = &Group{Origin: origin, Stack: stack, Causes: map[string]int{}, Site: "(no stack)"}
			if len(stack) > 0 {
				g.Site = stack[0].String()
			}
			if origin != OriginCreated {
				g.Created = sym.frames(r.createdAt)
			}
			groups[key] = g
		}
		g.Count++
		switch r.dir {
		case dirInbound:
			g.Inbound++
		case dirOutbound:
			g.Outbound++
		}
		if r.sawEOF.Load() {
			g.Causes[CauseMissingClose]++
		} else {
			g.Causes[CauseAbandonedUnread]++
		}
		g.OldestCloseWait = max(g.OldestCloseWait, lastAck)
		g.OldestConn = max(g.OldestConn, time.Duration(now-r.created))
		lastIO := max(r.created, r.lastRead.Load(), r.lastWrite.Load())
		g.LongestIdle = max(g.LongestIdle, time.Duration(now-lastIO))
		if len(g.Remotes) < maxRemotes && r.remote != nil {
			if ra := r.remote.String(); !slices.Contains(g.Remotes, ra) {
				g.Remotes = append(g.Remotes, ra)
			}
		}
	}
	for _, g := range groups {
		g.Advice = advice(g)
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(a, b Group) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if a.OldestCloseWait != b.OldestCloseWait {
			return int(b.OldestCloseWait - a.OldestCloseWait)
		}
		return strings.Compare(a.Site, b.Site)
	})
	return rep
}

// advice says what to do about g.
func advice(g *Group) string {
	switch {
	case g.Origin == OriginUnknown:
		return "no stack was recorded for these connections: raise Options.SampleRate (1 records every connection) to find the code"
	case g.Origin == OriginRequest:
		return "a response obtained here is not closed on some path: call defer resp.Body.Close() right after the request's error check, on every status"
	case g.Causes[CauseMissingClose] >= g.Causes[CauseAbandonedUnread]:
		return "this code reads the connection until EOF or an error and returns without closing it: add defer conn.Close() where the connection is obtained"
	default:
		return "the connection is not read any more although the peer closed it: it was dropped without Close, or the goroutine owning it is blocked (look for it in a goroutine dump, pprof goroutine?debug=2)"
	}
}

func (r *record) isRemoved() bool {
	s := r.t.shardOf(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.removed
}

// attribute picks the most specific recorded stack of r that has user
// frames.
func (s symbolizer) attribute(r *record) (string, []Frame) {
	cands := [...]struct {
		origin string
		pcs    *[]uintptr
	}{
		{OriginReadError, r.readErr.Load()},
		{OriginRequest, r.requestStack()},
		{OriginFirstRead, r.firstRead.Load()},
		{OriginCreated, &r.createdAt},
	}
	for _, c := range cands {
		if c.pcs == nil {
			continue
		}
		if f := s.frames(*c.pcs); len(f) > 0 {
			return c.origin, f
		}
	}
	return OriginUnknown, nil
}

func framesKey(fs []Frame) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s:%d\n", f.Function, f.Line)
	}
	return b.String()
}

// Leaks reports whether the report found connections in CLOSE_WAIT.
func (r *Report) Leaks() bool { return r.CloseWait > 0 }

// WriteText writes the report in a human-readable form.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "leakcheck %s: %d of %d tracked connections in CLOSE_WAIT",
		r.Time.UTC().Format(time.RFC3339), r.CloseWait, r.Tracked)
	if r.Young > 0 {
		fmt.Fprintf(&b, " (and %d closed by the peer too recently to count)", r.Young)
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, " (%d could not be checked)", r.Errors)
	}
	b.WriteString("\n")
	for i, g := range r.Groups {
		fmt.Fprintf(&b, "\n#%d  %d connection(s) in CLOSE_WAIT", i+1, g.Count)
		if g.Inbound > 0 {
			fmt.Fprintf(&b, ", %d inbound", g.Inbound)
		}
		if g.Outbound > 0 {
			fmt.Fprintf(&b, ", %d outbound", g.Outbound)
		}
		fmt.Fprintf(&b, "\n    oldest %s since the peer closed, oldest connection %s old, idle up to %s\n",
			g.OldestCloseWait.Round(time.Millisecond), g.OldestConn.Round(time.Millisecond), g.LongestIdle.Round(time.Millisecond))
		causes := make([]string, 0, len(g.Causes))
		for c, n := range g.Causes {
			causes = append(causes, fmt.Sprintf("%s=%d", c, n))
		}
		slices.Sort(causes)
		fmt.Fprintf(&b, "    cause: %s\n", strings.Join(causes, " "))
		fmt.Fprintf(&b, "    %s at %s\n", g.Origin, g.Site)
		writeFrames(&b, g.Stack)
		if len(g.Created) > 0 {
			fmt.Fprintf(&b, "    created at %s\n", g.Created[0])
			writeFrames(&b, g.Created)
		}
		if len(g.Remotes) > 0 {
			fmt.Fprintf(&b, "    peers: %s\n", strings.Join(g.Remotes, ", "))
		}
		fmt.Fprintf(&b, "    next step: %s\n", g.Advice)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFrames(b *strings.Builder, fs []Frame) {
	for _, f := range fs {
		fmt.Fprintf(b, "        %s\n            %s:%d\n", f.Function, f.File, f.Line)
	}
}

// String returns the text form of the report (see [Report.WriteText]).
func (r *Report) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}
