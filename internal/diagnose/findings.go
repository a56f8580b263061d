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

// Rule limits of the classification.
const (
	// NormalHalfCloseAge: sockets all younger than this may still be closing normally.
	NormalHalfCloseAge = 10 * time.Second
	// NormalHalfCloseMax: at most this many young sockets count as a normal half-close.
	NormalHalfCloseMax = 5
)

// Cause ids.
const (
	CauseMissingClose    = "missing-close"
	CauseAbandonedUnread = "abandoned-unread"
	CausePoolIdle        = "pool-idle"
	CauseNotAccepted     = "not-accepted"
	CauseNormalHalfClose = "normal-half-close"
	CauseGrowing         = "growing"
)

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
	return w.findings(snap, socks)
}

// rank orders findings: growth first (it is the urgent one), normal last.
func rank(cause string) int {
	switch cause {
	case CauseGrowing:
		return 0
	case CauseNormalHalfClose:
		return 2
	}
	return 1
}

// adviceContext holds what the advice of one process is filled in with.
type adviceContext struct {
	p     *ProcessReport
	snap  *snapshot.Snapshot
	repl  *strings.Replacer
	vars  []string
	ports []uint16
}

func newAdviceContext(p *ProcessReport, snap *snapshot.Snapshot) *adviceContext {
	c := &adviceContext{p: p, snap: snap}
	if snap != nil {
		for _, l := range snap.Listeners {
			for _, o := range l.Owners {
				if o.PID == p.PID && !slices.Contains(c.ports, l.Local.Port()) {
					c.ports = append(c.ports, l.Local.Port())
				}
			}
		}
	}
	slices.Sort(c.ports)
	user := ""
	if p.Process != nil && p.Process.User != "" && p.Process.User != "root" {
		user = "sudo -u " + p.Process.User + " "
	}
	ports := ""
	if len(c.ports) > 0 {
		ports = " (it listens on " + joinPorts(c.ports) + ")"
	}
	c.vars = []string{"{pid}", strconv.Itoa(p.PID), "{user}", user, "{ports}", ports}
	c.repl = c.withEvict("N")
	return c
}

// withEvict is the replacer with {evict} set.
func (c *adviceContext) withEvict(ev string) *strings.Replacer {
	return strings.NewReplacer(append(slices.Clone(c.vars), "{evict}", ev)...)
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// finding describes the sockets of one group that share a cause, from
// what they add up to (st); groupSize is the number of the group's sockets.
func (c *adviceContext) finding(k groupKey, cause string, st *partStats, groupSize int) Finding {
	f := Finding{Cause: cause, Count: st.n, Direction: "outbound"}
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
	f.Oldest = math.Round(st.maxAge.Seconds()*1000) / 1000
	f.Keepalive = st.keepalive
	n, maxQ, withData := st.n, st.maxQ, st.withData
	of := fmt.Sprintf("%d of %d sockets %s", n, groupSize, where)
	if n == groupSize {
		of = fmt.Sprintf("all %d sockets %s", n, where)
		if n == 1 {
			of = "the socket " + where
		}
	}
	have, wait := "have", "wait"
	if n == 1 {
		have, wait = "has", "waits"
	}
	repl := c.repl
	switch cause {
	case CauseMissingClose:
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s Recv-Q 0: the app read up to EOF (the peer's FIN) and did not close", of, have))
	case CauseAbandonedUnread:
		e := fmt.Sprintf("%s %s Recv-Q ≥ 1: the app never read them after the peer closed (the FIN is still queued)", of, have)
		if withData > 0 {
			e += fmt.Sprintf("; %d still hold unread data (up to %s)", withData, bytesText(maxQ-1))
		}
		f.Evidence = append(f.Evidence, e)
		if k.inbound {
			f.Evidence = append(f.Evidence, "the connections were accepted and then forgotten, or the workers holding them are blocked elsewhere")
		} else {
			f.Evidence = append(f.Evidence, "the app stopped reading the responses: a stuck caller, or a pooled connection with an unread body")
		}
	case CausePoolIdle:
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s Recv-Q 1 (only the FIN unread): idle pooled connections that the server closed and the pool never noticed", of, have))
		if med, lo, m := st.idleMed, st.idleMin, st.idleN; m > 0 {
			f.RemoteIdleTimeout = math.Round(med*1000) / 1000
			ev := evictText(lo)
			repl = c.withEvict(ev)
			f.Evidence = append(f.Evidence, fmt.Sprintf(
				"the server closed them after about %s idle (tcp_info: last data received minus the FIN's arrival; median of %d, shortest %s): evict idle connections after less than %s",
				secondsText(med), m, secondsText(lo), secondsText(lo)))
		}
	case CauseNotAccepted:
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s in the accept queue: the peers gave up before the app called accept(), so they have no fd", of, wait))
		for _, l := range listenersOn(c.snap, k.port, c.p.PID) {
			f.Evidence = append(f.Evidence, fmt.Sprintf("listener %s has %d connections queued (backlog %d): the process is not accepting", l.Local, l.RecvQ, l.SendQ))
		}
		if k.others == 0 {
			f.Check = fmt.Sprintf("ss -ltn '( sport = :%d )'   # Recv-Q of the listener = connections waiting for accept()", k.port)
		}
	}
	if k.inbound && cause != CauseNotAccepted {
		switch a := st.peer; {
		case st.peers == 1 && n > 1 && a.IsLoopback():
			f.Evidence = append(f.Evidence, fmt.Sprintf("all from this host (%s): a local proxy, sidecar or client", a))
		case st.peers == 1 && n > 1:
			f.Evidence = append(f.Evidence, fmt.Sprintf("all from one peer address, %s (a proxy, load balancer or health checker?)", a))
		case st.peers > 1:
			f.Evidence = append(f.Evidence, fmt.Sprintf("from %d peer addresses", st.peers))
		}
	}
	if st.nAges > 0 {
		e := fmt.Sprintf("oldest ~%s, newest ~%s", FormatAge(st.maxAge), FormatAge(st.minAge))
		if c.snap != nil && !c.snap.Time.IsZero() {
			e += fmt.Sprintf(" (the first FIN arrived about %s)", c.snap.Time.Add(-st.maxAge).UTC().Format("15:04:05 UTC"))
		}
		f.Evidence = append(f.Evidence, e)
	}
	if cause != CauseNotAccepted {
		f.Evidence = append(f.Evidence, keepaliveText(f.Keepalive, n))
	}
	if (cause == CauseAbandonedUnread || cause == CauseNotAccepted) && c.p.Threads != nil {
		f.Evidence = append(f.Evidence, "threads: "+c.p.Threads.String())
	}

	young := st.nAges == n && n > 0 && st.maxAge < NormalHalfCloseAge
	if young && n <= NormalHalfCloseMax && !c.p.Growth.Growing() && cause != CauseNotAccepted {
		f.Evidence = append([]string{fmt.Sprintf("%s, all younger than %s and not growing: most likely a normal half-close in progress (%s)",
			countText(n), FormatAge(NormalHalfCloseAge), cause)}, f.Evidence...)
		f.Cause = CauseNormalHalfClose
		f.NextSteps = []string{"nothing to do now; look again in a minute (or closewait --sample 10s): investigate only if they age or grow"}
		return f
	}
	f.NextSteps = c.steps(cause)
	if cause == CausePoolIdle {
		f.NextSteps = append([]string{fmt.Sprintf("find the client or pool that talks %s (its idle/keepalive settings)", where)}, f.NextSteps...)
	}
	f.Fix = advice(fixes[cause], c.p.Runtime, repl)
	return f
}

// steps are the runtime's commands for a cause, then a runtime-independent one.
func (c *adviceContext) steps(cause string) []string {
	rt := c.p.Runtime
	if rt == "node" && (c.p.Process == nil || !strings.Contains(c.p.Process.Cmdline, "--report-on-signal")) {
		rt = "node-noreport"
	}
	out := advice(stackSteps, rt, c.repl)
	out = append(out, c.repl.Replace("ls -l /proc/{pid}/fd | grep -c socket:   # socket fds it holds; compare with the CLOSE_WAIT count"))
	if pr := c.p.Process; pr != nil && pr.Container.ID != "" {
		id := pr.Container.ID
		if len(id) > 12 {
			id = id[:12]
		}
		out = append(out, fmt.Sprintf("it runs in a %s container (%s): run the tools above inside it (docker exec / kubectl exec, where the pid is the container's own, often 1), or from the host with nsenter -t %d -m -p",
			pr.Container.Runtime, id, c.p.PID))
	}
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

// evictText is an idle eviction comfortably below an idle timeout, in seconds.
func evictText(timeout float64) string {
	e := math.Floor(timeout * 0.8)
	if e < 1 {
		return strconv.FormatFloat(math.Max(math.Floor(timeout*8)/10, 0.1), 'f', 1, 64)
	}
	return strconv.Itoa(int(e))
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

func countText(n int) string {
	if n == 1 {
		return "1 socket"
	}
	return fmt.Sprintf("%d sockets", n)
}

// keepaliveText says whether the keepalive sysctls can matter for these sockets.
func keepaliveText(k, n int) string {
	if k == 0 {
		return "none has SO_KEEPALIVE set: the net.ipv4.tcp_keepalive_* sysctls cannot clear them; only close() in the app (or its exit) does"
	}
	return fmt.Sprintf("%d of %d have SO_KEEPALIVE set: after the peer's FIN_WAIT2 times out (net.ipv4.tcp_fin_timeout) a keepalive probe draws a RST and the kernel drops the connection, "+
		"but the fd stays open until the app closes it: lowering tcp_keepalive_time is a workaround, not the fix", k, n)
}
