package diagnose

// The implementation of Analyze and Findings before the Analyzer, with the
// advice filled in as it was (strings.Replacer), kept as the oracle the
// tests compare with (TestAnalyzerSequence, TestAnalyzerRandom). The one
// change: the findings sort breaks the ties it left to map order (two
// merged "other" groups, inbound and outbound, with the same cause and
// count; two normal-half-close parts of one group) by direction and by the
// cause before normal-half-close, as the new code does.

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Analyze judges a snapshot against thresholds.
func refAnalyze(snap *snapshot.Snapshot, th Thresholds, opt Options) *Report {
	r := &Report{Snapshot: snap, Thresholds: th, Selected: opt.PIDs != nil}
	byPID := map[int]*ProcessReport{}
	hints := map[string]procscan.RuntimeHints{}
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.State != sockdiag.CloseWait {
			continue
		}
		r.CloseWait++
		age, hasAge := s.Age()
		if len(s.Owners) == 0 {
			if opt.PIDs != nil {
				continue
			}
			r.Unattributed.Count++
			if hasAge {
				r.Unattributed.HasAge = true
				r.Unattributed.Oldest = max(r.Unattributed.Oldest, age)
			}
			continue
		}
		seen := map[int]bool{}
		for _, o := range s.Owners {
			if seen[o.PID] || (opt.PIDs != nil && !opt.PIDs[o.PID]) {
				continue
			}
			seen[o.PID] = true
			p := byPID[o.PID]
			if p == nil {
				p = &ProcessReport{PID: o.PID, Process: snap.Processes[o.PID]}
				p.Runtime, p.RuntimeEvidence = detectRuntime(p.Process, opt.FS, hints)
				byPID[o.PID] = p
			}
			p.CloseWait++
			if s.NotAccepted {
				p.NotAccepted++
			}
			if hasAge {
				p.HasAge = true
				p.Oldest = max(p.Oldest, age)
			}
			p.Sockets = append(p.Sockets, s)
		}
	}
	if opt.Previous != nil {
		r.Sample = snap.Time.Sub(opt.Previous.Time)
	}
	for _, p := range byPID {
		share := p.FDShare()
		p.Status, p.Reasons = th.judge(p.CloseWait, share, p.Oldest, p.HasAge)
		if opt.Previous != nil && r.Sample > 0 {
			p.Growth = refComputeGrowth(p, opt.Previous.byPID[p.PID], r.Sample)
			judgeGrowth(p)
		}
		if opt.FS != nil && p.Process != nil && (opt.AllThreads || holdsUnread(p)) {
			if ts, err := opt.FS.Threads(p.PID, maxThreads); err == nil {
				p.Threads = SummarizeThreads(ts)
			}
		}
		p.Findings = refFindings(p, snap)
		r.Processes = append(r.Processes, p)
		r.Status = max(r.Status, p.Status)
	}
	u := &r.Unattributed
	u.Status, u.Reasons = th.judge(u.Count, 0, u.Oldest, u.HasAge)
	r.Status = max(r.Status, u.Status)
	slices.SortFunc(r.Processes, func(a, b *ProcessReport) int {
		return cmp.Or(
			cmp.Compare(b.Status, a.Status),
			cmp.Compare(b.FDShare(), a.FDShare()),
			cmp.Compare(b.CloseWait, a.CloseWait),
			cmp.Compare(b.Oldest, a.Oldest),
			cmp.Compare(a.PID, b.PID),
		)
	})
	return r
}

// mergeSmallGroups keeps the MaxGroups largest groups of each direction and
// merges the rest.
func refMergeSmallGroups(groups map[groupKey][]*snapshot.Socket) map[groupKey][]*snapshot.Socket {
	for _, inbound := range []bool{true, false} {
		var keys []groupKey
		for k := range groups {
			if k.inbound == inbound {
				keys = append(keys, k)
			}
		}
		if len(keys) <= MaxGroups {
			continue
		}
		slices.SortFunc(keys, func(a, b groupKey) int {
			return cmp.Or(cmp.Compare(len(groups[b]), len(groups[a])), cmp.Compare(a.port, b.port), a.remote.Compare(b.remote))
		})
		rest := keys[MaxGroups-1:]
		merged := groupKey{inbound: inbound, others: len(rest)}
		var socks []*snapshot.Socket
		for _, k := range rest {
			socks = append(socks, groups[k]...)
			delete(groups, k)
		}
		groups[merged] = socks
	}
	return groups
}

// classify names the cause of one CLOSE_WAIT socket from its own facts.
func refClassify(s *snapshot.Socket) string {
	switch {
	case s.NotAccepted:
		return CauseNotAccepted
	case s.RecvQ == 0:
		return CauseMissingClose
	case !s.Inbound() && s.RecvQ == 1:
		return CausePoolIdle
	}
	return CauseAbandonedUnread
}

// Findings explains a process's CLOSE_WAIT sockets: it groups them by
// direction and concentration (listening port, or remote address), splits
// each group by cause (see [classify]), and describes each part with
// evidence, an ss check, next steps for the process's runtime and the fix.
// It reads p.Growth and p.Threads when they are set, and snap for the
// process's listeners. It does no I/O.
func refFindings(p *ProcessReport, snap *snapshot.Snapshot) []Finding {
	groups := map[groupKey][]*snapshot.Socket{}
	for _, s := range p.Sockets {
		if s.State != sockdiag.CloseWait {
			continue
		}
		k := groupKey{inbound: s.Inbound()}
		if k.inbound {
			k.port = s.Listener.Port()
		} else {
			k.remote = s.Remote
		}
		groups[k] = append(groups[k], s)
	}
	groups = refMergeSmallGroups(groups)
	ctx := newRefAdvice(p, snap)
	type ranked struct {
		f     Finding
		cause int
	}
	var out []ranked
	for k, all := range groups {
		parts := map[string][]*snapshot.Socket{}
		for _, s := range all {
			c := refClassify(s)
			parts[c] = append(parts[c], s)
		}
		for cause, socks := range parts {
			out = append(out, ranked{refFinding(ctx, k, cause, socks, len(all)), slices.Index(causeNames[:], cause)})
		}
	}
	if f, ok := refGrowthFinding(p); ok {
		f.Check = ctx.checkAll()
		f.NextSteps = ctx.steps(CauseGrowing)
		f.Fix = refAdviceLines(fixes[CauseGrowing], p.Runtime, ctx.repl)
		out = append(out, ranked{f, -1})
	}
	slices.SortFunc(out, func(a, b ranked) int {
		return cmp.Or(
			cmp.Compare(rank(a.f.Cause), rank(b.f.Cause)),
			cmp.Compare(b.f.Count, a.f.Count),
			cmp.Compare(a.f.Cause, b.f.Cause),
			cmp.Compare(a.f.LocalPort, b.f.LocalPort),
			cmp.Compare(a.f.Remote, b.f.Remote),
			cmp.Compare(a.f.Direction, b.f.Direction), // added: see the file comment
			cmp.Compare(a.cause, b.cause),             // added
		)
	})
	var fs []Finding
	for _, r := range out {
		fs = append(fs, r.f)
	}
	return fs
}

// finding describes the sockets of one group that share a cause.
func refFinding(c *refAdvice, k groupKey, cause string, socks []*snapshot.Socket, groupSize int) Finding {
	f := Finding{Cause: cause, Count: len(socks), Direction: "outbound"}
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
	f.Oldest = refOldestSeconds(socks)
	var ages []time.Duration
	maxQ, withData := uint32(0), 0
	for _, s := range socks {
		if s.KeepaliveSet() {
			f.Keepalive++
		}
		if a, ok := s.Age(); ok {
			ages = append(ages, a)
		}
		maxQ = max(maxQ, s.RecvQ)
		if s.RecvQ > 1 {
			withData++
		}
	}
	of := fmt.Sprintf("%d of %d sockets %s", len(socks), groupSize, where)
	if len(socks) == groupSize {
		of = fmt.Sprintf("all %d sockets %s", len(socks), where)
		if len(socks) == 1 {
			of = "the socket " + where
		}
	}
	have, wait := "have", "wait"
	if len(socks) == 1 {
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
		if med, lo, n := refIdleTimeout(socks); n > 0 {
			f.RemoteIdleTimeout = math.Round(med*1000) / 1000
			ev := evictText(lo)
			repl = c.withEvict(ev)
			f.Evidence = append(f.Evidence, fmt.Sprintf(
				"the server closed them after about %s idle (tcp_info: last data received minus the FIN's arrival; median of %d, shortest %s): evict idle connections after less than %s",
				secondsText(med), n, secondsText(lo), secondsText(lo)))
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
		peers := map[netip.Addr]bool{}
		for _, s := range socks {
			peers[s.Remote.Addr()] = true
		}
		switch a := socks[0].Remote.Addr(); {
		case len(peers) == 1 && len(socks) > 1 && a.IsLoopback():
			f.Evidence = append(f.Evidence, fmt.Sprintf("all from this host (%s): a local proxy, sidecar or client", a))
		case len(peers) == 1 && len(socks) > 1:
			f.Evidence = append(f.Evidence, fmt.Sprintf("all from one peer address, %s (a proxy, load balancer or health checker?)", socks[0].Remote.Addr()))
		case len(peers) > 1:
			f.Evidence = append(f.Evidence, fmt.Sprintf("from %d peer addresses", len(peers)))
		}
	}
	if len(ages) > 0 {
		slices.Sort(ages)
		e := fmt.Sprintf("oldest ~%s, newest ~%s", FormatAge(ages[len(ages)-1]), FormatAge(ages[0]))
		if c.snap != nil && !c.snap.Time.IsZero() {
			e += fmt.Sprintf(" (the first FIN arrived about %s)", c.snap.Time.Add(-ages[len(ages)-1]).UTC().Format("15:04:05 UTC"))
		}
		f.Evidence = append(f.Evidence, e)
	}
	if cause != CauseNotAccepted {
		f.Evidence = append(f.Evidence, keepaliveText(f.Keepalive, len(socks)))
	}
	if (cause == CauseAbandonedUnread || cause == CauseNotAccepted) && c.p.Threads != nil {
		f.Evidence = append(f.Evidence, "threads: "+c.p.Threads.String())
	}

	young := len(ages) == len(socks) && len(ages) > 0 && ages[len(ages)-1] < NormalHalfCloseAge
	if young && len(socks) <= NormalHalfCloseMax && !c.p.Growth.Growing() && cause != CauseNotAccepted {
		f.Evidence = append([]string{fmt.Sprintf("%s, all younger than %s and not growing: most likely a normal half-close in progress (%s)",
			countText(len(socks)), FormatAge(NormalHalfCloseAge), cause)}, f.Evidence...)
		f.Cause = CauseNormalHalfClose
		f.NextSteps = []string{"nothing to do now; look again in a minute (or closewait --sample 10s): investigate only if they age or grow"}
		return f
	}
	f.NextSteps = c.steps(cause)
	if cause == CausePoolIdle {
		f.NextSteps = append([]string{fmt.Sprintf("find the client or pool that talks %s (its idle/keepalive settings)", where)}, f.NextSteps...)
	}
	f.Fix = refAdviceLines(fixes[cause], c.p.Runtime, repl)
	return f
}

// oldestSeconds is the oldest age of the sockets in seconds (ms precision), or 0.
func refOldestSeconds(socks []*snapshot.Socket) float64 {
	var old time.Duration
	for _, s := range socks {
		if a, ok := s.Age(); ok {
			old = max(old, a)
		}
	}
	return math.Round(old.Seconds()*1000) / 1000
}

// directionOf is the direction most of the sockets have.
func refDirectionOf(socks []*snapshot.Socket) string {
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

// idleTimeout estimates the server's idle timeout from pooled sockets'
// tcp_info: last_data_recv − last_ack_recv is how long each sat idle before
// the FIN. It returns the median and the minimum in seconds and how many
// sockets gave an estimate.
func refIdleTimeout(socks []*snapshot.Socket) (median, minimum float64, n int) {
	var v []float64
	for _, s := range socks {
		if !s.HasInfo || s.Info.LastDataRecv < s.Info.LastAckRecv {
			continue
		}
		v = append(v, float64(s.Info.LastDataRecv-s.Info.LastAckRecv)/1000)
	}
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	median = v[len(v)/2]
	if len(v)%2 == 0 {
		median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return median, v[0], len(v)
}

// computeGrowth compares a process's sockets now with those it held before.
func refComputeGrowth(p *ProcessReport, before map[sockKey]struct{}, interval time.Duration) *Growth {
	g := &Growth{Interval: interval, Before: len(before)}
	for _, s := range p.Sockets {
		if _, ok := before[keyOf(s)]; !ok {
			g.Entered++
		}
	}
	// A process lists each socket once, so the sockets still here are
	// len(p.Sockets) - Entered, and the rest of before has left.
	g.Left = max(len(before)-(len(p.Sockets)-g.Entered), 0)
	if len(p.Sockets) <= NormalHalfCloseMax {
		g.InFlight = true
		for _, s := range p.Sockets {
			if a, ok := s.Age(); !ok || a >= NormalHalfCloseAge {
				g.InFlight = false
			}
		}
	}
	mins := interval.Minutes()
	if mins <= 0 {
		return g
	}
	g.EnteredPerMin = float64(g.Entered) / mins
	g.LeftPerMin = float64(g.Left) / mins
	g.NetPerMin = float64(g.Entered-g.Left) / mins
	if pr := p.Process; pr != nil && g.NetPerMin > 0 && !g.InFlight && pr.FDSoft != 0 && pr.FDSoft != procscan.Unlimited {
		free := float64(pr.FDSoft) - float64(pr.OpenFDs)
		g.HasETA = true
		g.ETA = time.Duration(math.Max(free, 0) / g.NetPerMin * float64(time.Minute))
	}
	return g
}

// growthFinding is the finding for a process whose CLOSE_WAIT count grows.
func refGrowthFinding(p *ProcessReport) (Finding, bool) {
	g := p.Growth
	if !g.Growing() {
		return Finding{}, false
	}
	f := Finding{Cause: "growing", Direction: refDirectionOf(p.Sockets), Count: p.CloseWait}
	f.Oldest = refOldestSeconds(p.Sockets)
	f.Evidence = append(f.Evidence, fmt.Sprintf(
		"%d sockets entered CLOSE_WAIT and %d left in %s (%s/min in, %s/min out): it leaves more sockets open than it closes",
		g.Entered, g.Left, FormatAge(g.Interval), rate(g.EnteredPerMin), rate(g.LeftPerMin)))
	if g.HasETA {
		pr := p.Process
		f.Evidence = append(f.Evidence, fmt.Sprintf("%d of %d fds open: at %s/min it reaches the fd limit (EMFILE, \"too many open files\") in about %s",
			pr.OpenFDs, pr.FDSoft, rate(g.NetPerMin), FormatAge(g.ETA)))
	}
	return f, true
}

// refAdvice is adviceContext as it was: it holds what the advice of one process is filled in with.
type refAdvice struct {
	p     *ProcessReport
	snap  *snapshot.Snapshot
	repl  *strings.Replacer
	vars  []string
	ports []uint16
}

func newRefAdvice(p *ProcessReport, snap *snapshot.Snapshot) *refAdvice {
	c := &refAdvice{p: p, snap: snap}
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
func (c *refAdvice) withEvict(ev string) *strings.Replacer {
	return strings.NewReplacer(append(slices.Clone(c.vars), "{evict}", ev)...)
}

// steps are the runtime's commands for a cause, then a runtime-independent one.
func (c *refAdvice) steps(cause string) []string {
	rt := c.p.Runtime
	if rt == "node" && (c.p.Process == nil || !strings.Contains(c.p.Process.Cmdline, "--report-on-signal")) {
		rt = "node-noreport"
	}
	out := refAdviceLines(stackSteps, rt, c.repl)
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
func (c *refAdvice) checkAll() string {
	return fmt.Sprintf("ss -tnp state close-wait | grep 'pid=%d,'", c.p.PID)
}

// refAdviceLines is advice as it was: it fills placeholders in the lines of table[runtime] (or table["other"]).
func refAdviceLines(table map[string][]string, runtime string, r *strings.Replacer) []string {
	lines, ok := table[runtime]
	if !ok {
		lines = table["other"]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = r.Replace(l)
	}
	return out
}
