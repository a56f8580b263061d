package diagnose

// A plain implementation of Analyze and Findings (maps, no cache), kept as
// the oracle of their structure: which findings a report has, with their
// causes, directions, groups, counts, ages, idle estimates and checks
// (TestAnalyzerSequence, TestAnalyzerRandom compare [structure]s). Their
// words come from the cause registry and are tested there and by the rule
// tests; the Analyzer's full reports are compared with a fresh Analyze.

import (
	"cmp"
	"fmt"
	"math"
	"slices"
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
				p.Runtime, p.RuntimeEvidence, p.Libraries = detectRuntime(p.Process, opt.FS, hints)
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
		p.Status, p.Reasons = th.Judge(p.CloseWait, share, p.Oldest, p.HasAge)
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
	u.Status, u.Reasons = th.Judge(u.Count, 0, u.Oldest, u.HasAge)
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
	case !s.Inbound() && s.RecvQ > 1 && s.RecvQ <= 4097 && s.HasInfo &&
		math.Abs(float64(s.Info.LastDataRecv)-float64(s.Info.LastAckRecv)) <= 500 &&
		float64(s.Info.LastDataSent)-float64(s.Info.LastDataRecv) >= 500:
		return CausePoolIdle // a goodbye
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
			k.port = s.Listener().Port()
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
			ci := slices.IndexFunc(socketCauses, func(c *Cause) bool { return c.ID == cause })
			out = append(out, ranked{refFinding(ctx, k, cause, socks, len(all)), ci})
		}
	}
	if f, ok := refGrowthFinding(p); ok {
		f.Check = ctx.checkAll()
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

// finding describes the sockets of one group that share a cause: its
// structure, without words.
func refFinding(c *refAdvice, k groupKey, cause string, socks []*snapshot.Socket, groupSize int) Finding {
	if cause == CauseNotAccepted {
		if pr := c.p.Process; pr != nil && pr.FDSoft != 0 && pr.FDSoft != procscan.Unlimited &&
			int64(pr.FDSoft)-int64(pr.OpenFDs) <= max(2, int64(pr.FDSoft)/50) {
			cause = CauseFDExhausted
		}
	}
	f := Finding{Cause: cause, Count: len(socks), Direction: "outbound"}
	switch {
	case k.others > 0 && k.inbound:
		f.Direction = "inbound"
		f.Check = c.checkAll()
	case k.others > 0:
		f.Check = c.checkAll()
	case k.inbound:
		f.Direction, f.LocalPort = "inbound", k.port
		f.Check = fmt.Sprintf("ss -tnp state close-wait '( sport = :%d )'", k.port)
	default:
		f.Remote = k.remote.String()
		f.Check = "ss -tnp state close-wait dst " + f.Remote
	}
	f.Oldest = refOldestSeconds(socks)
	var ages []time.Duration
	for _, s := range socks {
		if s.KeepaliveSet() {
			f.Keepalive++
		}
		if a, ok := s.Age(); ok {
			ages = append(ages, a)
		}
	}
	switch cause {
	case CausePoolIdle:
		if med, _, n := refIdleTimeout(socks); n > 0 {
			f.RemoteIdleTimeout = math.Round(med*1000) / 1000
		}
	case CauseNotAccepted, CauseFDExhausted:
		if k.others == 0 {
			f.Check = fmt.Sprintf("ss -ltn '( sport = :%d )'   # Recv-Q of the listener = connections waiting for accept()", k.port)
		}
	}
	slices.Sort(ages)
	young := len(ages) == len(socks) && len(ages) > 0 && ages[len(ages)-1] < NormalHalfCloseAge
	queued := cause == CauseNotAccepted || cause == CauseFDExhausted
	if young && len(socks) <= NormalHalfCloseMax && !c.p.Growth.Growing() && !queued {
		f.Cause = CauseNormalHalfClose
	}
	return f
}

// structure is a report without the findings' words (evidence, next
// steps, fix): what the reference computes.
func structure(r *Report) *Report {
	c := *r
	c.Processes = nil
	c.Unattributed.Groups = nil // tested by TestUnownedGroups
	for _, p := range r.Processes {
		q := *p
		q.Findings = structureOf(p.Findings)
		c.Processes = append(c.Processes, &q)
	}
	return &c
}

// structureOf is findings without their words.
func structureOf(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		f.Evidence, f.NextSteps, f.Fix = nil, nil, nil
		out = append(out, f)
	}
	return out
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
		switch {
		case !s.HasInfo:
		case s.RecvQ > 1 && s.Info.LastDataSent >= s.Info.LastDataRecv: // a goodbye
			v = append(v, float64(s.Info.LastDataSent-s.Info.LastDataRecv)/1000)
		case s.RecvQ == 1 && s.Info.LastDataRecv >= s.Info.LastAckRecv:
			v = append(v, float64(s.Info.LastDataRecv-s.Info.LastAckRecv)/1000)
		}
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
	return f, true
}

// refAdvice is what a reference finding is written with.
type refAdvice struct {
	p *ProcessReport
}

func newRefAdvice(p *ProcessReport, _ *snapshot.Snapshot) *refAdvice { return &refAdvice{p: p} }

// checkAll is the ss command that lists all the process's CLOSE_WAIT sockets.
func (c *refAdvice) checkAll() string {
	return fmt.Sprintf("ss -tnp state close-wait | grep 'pid=%d,'", c.p.PID)
}
