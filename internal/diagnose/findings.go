package diagnose

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Finding is one explanation of some of a process's CLOSE_WAIT sockets.
type Finding struct {
	// Cause is a stable id: "missing-close", "abandoned-unread", "pool-idle",
	// "not-accepted", "normal-half-close", or "growing" (from two snapshots).
	Cause string
	// Direction is "inbound" (accepted from one of the host's listeners) or "outbound".
	Direction string
	// Remote is the peer address the sockets concentrate on (outbound), or "".
	Remote string
	// LocalPort is the listening port the sockets concentrate on (inbound), or 0.
	LocalPort uint16
	Count     int
	Oldest    float64 // seconds
	// RemoteIdleTimeout estimates, for pool-idle, how long the server let a
	// connection sit idle before closing it (seconds); 0 if unknown.
	RemoteIdleTimeout float64
	// Keepalive counts the sockets on which the application set SO_KEEPALIVE.
	Keepalive int
	Evidence  []string
	NextSteps []string
	// Check is an ss(8) command that shows the same sockets without closewait.
	Check string
	// Fix is the fix pattern, in the process's runtime's idiom.
	Fix []string
}

// groupKey is where a set of sockets concentrates: a listening port
// (inbound) or a remote address and port (outbound).
type groupKey struct {
	inbound bool
	port    uint16
	remote  netip.AddrPort
	others  int // > 0: the merged rest, this many ports or remotes
}

// MaxGroups is how many listening ports, and how many remotes, get findings
// of their own; smaller groups beyond them are merged into one "other" group
// per direction, so a crawler with 1,000 remotes gets a few findings, not 1,000.
const MaxGroups = 6

// Findings explains a process's CLOSE_WAIT sockets: it groups them by
// direction and concentration (listening port, or remote address), splits
// each group by cause (see the package doc), and describes each part with
// evidence, an ss check, next steps for the process's runtime and the fix.
// It reads p.Growth and p.Threads when they are set, and snap for the
// process's listeners. It does no I/O.
func Findings(p *ProcessReport, snap *snapshot.Snapshot) []Finding {
	notCW := func(s *snapshot.Socket) bool { return s.State != sockdiag.CloseWait }
	socks := p.Sockets
	if slices.ContainsFunc(socks, notCW) {
		socks = slices.DeleteFunc(slices.Clone(socks), notCW)
	}
	w := (*Analyzer)(nil).newWork(p, nil)
	for _, s := range socks {
		age, ok := s.Age()
		w.add(s, age, ok)
	}
	if p.Growth.Growing() {
		w.growthDir, w.growthOldest = directionOf(p.Sockets), oldestSeconds(p.Sockets)
	}
	return w.findings(snap, socks, nil)
}

// adviceContext holds what the advice of one process is filled in with.
type adviceContext struct {
	p    *ProcessReport
	snap *snapshot.Snapshot
	fill filler
	key  ctxKey
	// growthKnown: an earlier snapshot was compared (p.Growth is set); the
	// normal half-close sentence of small parts says so.
	growthKnown bool
	steps       []string // see stackSteps
}

// ctxKey is what a process's advice depends on, besides the cause and the
// sockets: findings of two processes with equal keys read alike.
type ctxKey struct {
	pid                    int
	runtime                string // of the fix tables
	stepsRuntime           string // of stackSteps: node-noreport for node without --report-on-signal
	user, ports            string // {user}, {ports}
	container, containerID string // the container runtime and the id's first 12 characters, or ""
	threads                string // the process's threads in words, or ""
	blocked                bool   // most threads wait on a lock (threadsBlocked)
	libraries              string // detected client libraries, joined
	fds                    string // open/soft/hard fds and cgroup, when fdsFull
}

// newAdviceContext gathers the advice of process p. ports are the ports it
// listens on (sorted, distinct), or nil to find them in snap.
func newAdviceContext(p *ProcessReport, snap *snapshot.Snapshot, ports []uint16) *adviceContext {
	c := &adviceContext{p: p, snap: snap}
	if ports == nil {
		ports = listenerPorts(snap)[p.PID]
	}
	c.key = ctxKey{pid: p.PID, runtime: p.Runtime, stepsRuntime: p.Runtime}
	if p.Runtime == "node" && (p.Process == nil || !strings.Contains(p.Process.Cmdline, "--report-on-signal")) {
		c.key.stepsRuntime = "node-noreport"
	}
	if p.Process != nil && p.Process.User != "" && p.Process.User != "root" {
		c.key.user = "sudo -u " + p.Process.User + " "
	}
	if len(ports) > 0 {
		c.key.ports = " (it listens on " + joinPorts(ports) + ")"
	}
	if pr := p.Process; pr != nil && pr.Container.ID != "" {
		id := pr.Container.ID
		if len(id) > 12 {
			id = id[:12]
		}
		c.key.container, c.key.containerID = pr.Container.Runtime, id
	}
	if p.Threads != nil {
		c.key.threads = p.Threads.String()
		c.key.blocked = threadsBlocked(p.Threads, p.Runtime)
	}
	c.key.libraries = strings.Join(p.Libraries, ",")
	c.growthKnown = p.Growth != nil
	if fdsFull(p) {
		pr := p.Process
		c.key.fds = fmt.Sprintf("%d/%d/%d %s", pr.OpenFDs, pr.FDSoft, pr.FDHard, pr.Cgroup)
	}
	c.fill = filler{pid: strconv.Itoa(p.PID), user: c.key.user, ports: c.key.ports}
	return c
}

// listenerPorts are the ports each process listens on, sorted.
func listenerPorts(snap *snapshot.Snapshot) map[int][]uint16 {
	out := map[int][]uint16{}
	if snap == nil {
		return out
	}
	for _, l := range snap.Listeners {
		for _, o := range l.Owners {
			if ps := out[o.PID]; !slices.Contains(ps, l.Local.Port()) {
				out[o.PID] = append(ps, l.Local.Port())
			}
		}
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// findingText is a finding without what moves with the sockets' ages: the
// oldest age, the line of ages and whether it is a normal half-close. It
// is a function of its textKey, so an Analyzer keeps it while that is the same.
type findingText struct {
	f              Finding  // without Oldest, Evidence, NextSteps and Fix
	before, after  []string // evidence before and after the ages
	normal         string   // the first line of evidence if it is a normal half-close
	nextSteps, fix []string
}

// textKey is what a findingText is made of.
type textKey struct {
	ctx                    ctxKey
	group                  groupKey
	cause, groupSize       int
	n, keepalive, withData int
	goodbye                int
	maxQ, minQ             uint32
	d                      derived
	listeners              string // not-accepted: the listeners' lines
	growthKnown            bool   // small parts: whether growth was measured
}

// textKey is the key of the text of a part.
func (c *adviceContext) textKey(k groupKey, cause int, st *partStats, groupSize int, listeners []string) textKey {
	t := textKey{ctx: c.key, group: k, cause: cause, groupSize: groupSize,
		n: st.n, keepalive: st.keepalive, withData: st.withData, goodbye: st.goodbye, maxQ: st.maxQ, minQ: st.minQ, d: st.derived}
	t.listeners = strings.Join(listeners, "\n")
	t.growthKnown = c.growthKnown && st.n <= NormalHalfCloseMax
	return t
}

// listenerLines are the evidence lines of a not-accepted part on port.
func (c *adviceContext) listenerLines(port uint16) []string {
	var out []string
	for _, l := range listenersOn(c.snap, port, c.p.PID) {
		why := "the process is not accepting"
		if fdsFull(c.p) { // fd-exhausted
			why = "the process cannot accept them without a free fd"
		}
		out = append(out, fmt.Sprintf("listener %s has %d connections queued (backlog %d): %s", l.Local, l.RecvQ, l.SendQ, why))
	}
	return out
}

// text writes what a part's finding says besides its ages; listeners are
// the listener lines of a not-accepted part.
func (c *adviceContext) text(k groupKey, causeIndex int, st *partStats, groupSize int, listeners []string) *findingText {
	cause := effective(causeIndex, c.p)
	t := &findingText{}
	f := &t.f
	f.Cause, f.Count, f.Direction = cause.ID, st.n, "outbound"
	where := ""
	switch {
	case k.others > 0 && k.inbound:
		f.Direction = "inbound"
		where = fmt.Sprintf("on %d other ports", k.others)
		f.Check = c.checkAll()
	case k.others > 0:
		where = fmt.Sprintf("to %d other remotes", k.others)
		f.Check = c.checkAll()
	case k.inbound:
		f.Direction, f.LocalPort = "inbound", k.port
		where = fmt.Sprintf("on port %d", k.port)
		f.Check = fmt.Sprintf("ss -tnp state close-wait '( sport = :%d )'", k.port)
	default:
		f.Remote = k.remote.String()
		where = "to " + f.Remote
		f.Check = "ss -tnp state close-wait dst " + f.Remote
	}
	f.Keepalive = st.keepalive
	n := st.n
	v := &partView{p: c.p, where: where, have: "have", wait: "wait", inbound: k.inbound, n: n, groupSize: groupSize,
		withData: st.withData, listeners: listeners, threads: c.key.threads, blocked: c.key.blocked, goodbye: st.goodbye}
	if st.maxQ > 1 {
		v.maxQ = st.maxQ - 1
		v.minQ = st.minQ - 1
	}
	v.of = fmt.Sprintf("%d of %d sockets %s", n, groupSize, where)
	if n == groupSize {
		v.of = fmt.Sprintf("all %d sockets %s", n, where)
		if n == 1 {
			v.of = "the socket " + where
		}
	}
	if n == 1 {
		v.have, v.wait = "has", "waits"
	}
	q := &adviceQuery{runtime: c.p.Runtime, inbound: k.inbound, where: where, libraries: c.p.Libraries, blocked: c.key.blocked, fill: c.fill, p: c.p}
	if causeIndex == causePoolIdle && st.idleN > 0 {
		v.idleMed, v.idleMin, v.idleN = st.idleMed, st.idleMin, st.idleN
		f.RemoteIdleTimeout = math.Round(st.idleMed*1000) / 1000
		q.serverIdle = time.Duration(st.idleMin * float64(time.Second))
		q.evict = evictBelow(q.serverIdle)
	}
	if cause.ID == CauseNotAccepted || cause.replaces == CauseNotAccepted {
		if k.others == 0 {
			f.Check = fmt.Sprintf("ss -ltn '( sport = :%d )'   # Recv-Q of the listener = connections waiting for accept()", k.port)
		}
	}
	t.before = append(t.before, cause.evidence(v)...)
	queued := causeIndex == causeNotAccepted
	if k.inbound && !queued {
		switch a := st.peer; {
		case st.peers == 1 && n > 1 && a.IsLoopback():
			t.before = append(t.before, fmt.Sprintf("all from this host (%s): a local proxy, sidecar or client", a))
		case st.peers == 1 && n > 1:
			t.before = append(t.before, fmt.Sprintf("all from one peer address, %s (a proxy, load balancer or health checker?)", a))
		case st.peers > 1:
			t.before = append(t.before, fmt.Sprintf("from %d peer addresses", st.peers))
		}
	}
	if !queued {
		t.after = append(t.after, keepaliveText(f.Keepalive, n))
	}
	if (cause.ID == CauseAbandonedUnread || queued) && c.p.Threads != nil {
		t.after = append(t.after, "threads: "+c.key.threads)
	}
	if n <= NormalHalfCloseMax && !queued {
		growth := "and not growing"
		if !c.growthKnown {
			growth = "(one snapshot: whether they grow is unknown until closewait --sample 10s)"
		}
		t.normal = fmt.Sprintf("%s, all younger than %s %s: most likely a normal half-close in progress (%s)",
			countText(n), FormatAge(NormalHalfCloseAge), growth, cause.ID)
	}
	t.nextSteps = c.nextSteps(cause, q)
	t.fix = cause.fix(q)
	return t
}

// nextSteps are a cause's next steps for q: its own, then (unless it has
// none) the runtime's commands that show where the sockets are held.
func (c *adviceContext) nextSteps(cause *Cause, q *adviceQuery) []string {
	var out []string
	if cause.steps != nil {
		out = cause.steps(q)
	}
	if !cause.noStackSteps {
		out = append(out, c.stackSteps()...)
	}
	return out
}

// finding is the finding of the text with the ages of st, in a snapshot
// taken at snap.Time; growing is whether the process's CLOSE_WAIT count grows.
func (t *findingText) finding(st *partStats, growing bool, snap *snapshot.Snapshot) Finding {
	f := t.f
	f.Oldest = math.Round(st.maxAge.Seconds()*1000) / 1000
	ev := make([]string, 0, len(t.before)+len(t.after)+2)
	young := st.nAges == st.n && st.n > 0 && st.maxAge < NormalHalfCloseAge
	normal := young && t.normal != "" && !growing
	if normal {
		ev = append(ev, t.normal)
	}
	ev = append(ev, t.before...)
	if st.nAges > 0 {
		e := fmt.Sprintf("oldest ~%s, newest ~%s", FormatAge(st.maxAge), FormatAge(st.minAge))
		if snap != nil && !snap.Time.IsZero() {
			e += fmt.Sprintf(" (the first FIN arrived about %s)", snap.Time.Add(-st.maxAge).UTC().Format("15:04:05 UTC"))
		}
		ev = append(ev, e)
	}
	f.Evidence = append(ev, t.after...)
	if normal {
		f.Cause = CauseNormalHalfClose
		f.NextSteps = normalCause.steps(nil)
		return f
	}
	f.NextSteps = slices.Clone(t.nextSteps)
	f.Fix = slices.Clone(t.fix)
	return f
}

// stackSteps are the runtime's commands that show where the sockets are
// held, then runtime-independent ones (the same for every cause).
func (c *adviceContext) stackSteps() []string {
	if c.steps != nil {
		return c.steps
	}
	out := advice(stackSteps, c.key.stepsRuntime, c.fill)
	out = append(out, c.fill.fill("ls -l /proc/{pid}/fd | grep -c socket:   # socket fds it holds; compare with the CLOSE_WAIT count"))
	if c.key.containerID != "" {
		out = append(out, fmt.Sprintf("it runs in a %s container (%s): run the tools above inside it (docker exec / kubectl exec, where the pid is the container's own, often 1), or from the host with nsenter -t %d -m -p",
			c.key.container, c.key.containerID, c.p.PID))
	}
	c.steps = out
	return out
}

// checkAll is the ss command that lists all the process's CLOSE_WAIT sockets.
func (c *adviceContext) checkAll() string {
	return fmt.Sprintf("ss -tnp state close-wait | grep 'pid=%d,'", c.p.PID)
}

// listenersOn returns the snapshot's listeners on port held by pid.
func listenersOn(snap *snapshot.Snapshot, port uint16, pid int) []snapshot.Socket {
	if snap == nil {
		return nil
	}
	var out []snapshot.Socket
	for _, l := range snap.Listeners {
		if l.Local.Port() != port {
			continue
		}
		for _, o := range l.Owners {
			if o.PID == pid {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// oldestSeconds is the oldest age of the sockets in seconds (ms precision), or 0.
func oldestSeconds(socks []*snapshot.Socket) float64 {
	var old time.Duration
	for _, s := range socks {
		if a, ok := s.Age(); ok {
			old = max(old, a)
		}
	}
	return math.Round(old.Seconds()*1000) / 1000
}

// directionOf is the direction most of the sockets have.
func directionOf(socks []*snapshot.Socket) string {
	in := 0
	for _, s := range socks {
		if s.Inbound() {
			in++
		}
	}
	if in*2 >= len(socks) {
		return "inbound"
	}
	return "outbound"
}

// secondsText prints seconds for a sentence: "600 s", "1.2 s".
func secondsText(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f s", v)
	}
	return fmt.Sprintf("%.1f s", v)
}

func bytesText(n uint32) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// countText is "1 socket" or "N sockets".
func countText(n int) string { return Count(n, "socket") }

// Count writes n and a noun, plural unless n is 1: "1 socket", "3
// CLOSE_WAIT sockets", "0 processes".
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// keepaliveText says whether the keepalive sysctls can matter for these sockets.
func keepaliveText(k, n int) string {
	if k == 0 {
		return "none has SO_KEEPALIVE set: the net.ipv4.tcp_keepalive_* sysctls cannot clear them; only close() in the app (or its exit) does"
	}
	return fmt.Sprintf("%d of %d have SO_KEEPALIVE set: after the peer's FIN_WAIT2 times out (net.ipv4.tcp_fin_timeout) a keepalive probe draws a RST and the kernel drops the connection, "+
		"but the fd stays open until the app closes it: lowering tcp_keepalive_time is a workaround, not the fix", k, n)
}
