// Package diagnose judges a snapshot: which processes hold CLOSE_WAIT
// sockets, how bad it is against thresholds, and why (findings with evidence
// and next steps). Its rules are pure functions of the snapshot, so they are
// tested on constructed snapshots as well as live ones; the only I/O is what
// [Options.FS] allows (a process's mapped libraries, Go build info and thread
// states, read through procscan).
//
// # Causes
//
// [Findings] groups a process's CLOSE_WAIT sockets by direction and where
// they concentrate (inbound: the listening port; outbound: the remote
// address and port), then splits each group by what the socket itself says:
//
//   - not-accepted: waiting in the accept queue (no fd): the server stopped accepting;
//   - missing-close: Recv-Q 0, the app read up to the FIN and did not close;
//   - pool-idle: outbound, Recv-Q 1 (only the FIN unread): an idle pooled
//     connection the server closed; tcp_info last_data_recv − last_ack_recv
//     estimates the server's idle timeout;
//   - abandoned-unread: anything else unread since the FIN;
//   - normal-half-close: a part that is young (all under [NormalHalfCloseAge]),
//     small (at most [NormalHalfCloseMax]) and not growing;
//   - growing: with an earlier snapshot ([Options.Previous]), more sockets
//     entered CLOSE_WAIT than left it (the churn rule), with the time left
//     until the fd limit at that rate.
//
// Next steps and fixes come from tables per runtime (steps.go), with the
// pid filled in.
//
// Callers that judge one snapshot after another (watch, agent) keep an
// [Analyzer]: the same reports, recomputing only what changed.
package diagnose

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

// Status is how bad something is. Its order matters: worse is greater.
type Status int

// Statuses, in increasing severity.
const (
	OK Status = iota
	Warning
	Critical
)

// String returns "ok", "warning" or "critical".
func (s Status) String() string {
	switch s {
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "ok"
}

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ExitCode is the process exit code for a report of this status: 0 ok,
// 1 warning, 2 critical. (3 means the report could not be made.)
func (s Status) ExitCode() int { return int(s) }

// Thresholds are the limits a process's CLOSE_WAIT sockets are judged by.
// A zero value disables that rule.
type Thresholds struct {
	CountWarning    int           // more CLOSE_WAIT sockets than this: warning
	CountCritical   int           // more than this: critical
	FDShareWarning  float64       // open fds above this share of the soft fd limit, with CLOSE_WAIT: warning
	FDShareCritical float64       // above this share: critical
	AgeWarning      time.Duration // oldest CLOSE_WAIT older than this: warning
	AgeCritical     time.Duration // older than this: critical
}

// DefaultThresholds are the field-practice defaults: count > 100 warning,
// > 50% of the fd limit critical, age > 5 min warning, > 30 min critical.
var DefaultThresholds = Thresholds{
	CountWarning:    100,
	FDShareCritical: 0.5,
	AgeWarning:      5 * time.Minute,
	AgeCritical:     30 * time.Minute,
}

// ProcessReport is the judgement of one process holding CLOSE_WAIT sockets.
type ProcessReport struct {
	PID     int
	Process *procscan.Process // nil if the process exited before its facts were read
	Runtime string            // "java", "node", "python", "go", "ruby", "dotnet" or "other"
	// RuntimeEvidence says what named the runtime ("libjvm.so is mapped"), or "".
	RuntimeEvidence string
	// Libraries are the client libraries the process shows ("hikaricp",
	// "pgx", …; see settings.go), sorted: pool advice names their settings.
	Libraries []string

	CloseWait   int           // CLOSE_WAIT sockets it holds (shared ones count for each holder)
	NotAccepted int           // of which waiting in its listeners' accept queues
	Oldest      time.Duration // oldest CLOSE_WAIT age estimate
	HasAge      bool          // Oldest is known (tcp_info was available)

	Status   Status
	Reasons  []string  // the thresholds that were crossed, in words
	Findings []Finding // why, and what to do
	Sockets  []*snapshot.Socket

	// Threads groups the process's threads by state and wait channel; nil
	// unless Options.FS was set and the process has sockets it does not read.
	Threads *ThreadSummary
	// Growth compares its CLOSE_WAIT sockets with Options.Previous; nil without it.
	Growth *Growth
}

// FDShare returns the process's open fds as a share of its soft limit, or 0.
func (p *ProcessReport) FDShare() float64 {
	if p.Process == nil {
		return 0
	}
	return p.Process.FDUsage()
}

// Report is the judgement of a whole snapshot.
type Report struct {
	Snapshot   *snapshot.Snapshot
	Thresholds Thresholds
	Status     Status
	CloseWait  int // CLOSE_WAIT sockets on the host (in the snapshot's namespace)
	// Processes hold CLOSE_WAIT sockets, worst first.
	Processes []*ProcessReport
	// Unattributed are CLOSE_WAIT sockets no visible process holds.
	Unattributed UnattributedReport
	// Sample is the time between Options.Previous and Snapshot; 0 for a single snapshot.
	Sample time.Duration
	// Selected is true when Options.PIDs narrowed the report to some processes.
	Selected bool
	// CloseWaitUnknown is true when the input could not count CLOSE_WAIT
	// sockets (saved ss -s output): CloseWait is then not 0 but unknown,
	// and so is the status.
	CloseWaitUnknown bool
}

// UnattributedReport judges the CLOSE_WAIT sockets with no owner found.
type UnattributedReport struct {
	Count   int
	Oldest  time.Duration
	HasAge  bool
	Status  Status
	Reasons []string
	// Groups are the sockets grouped by uid and listening port or remote,
	// judged alone, worst first (at most MaxUnownedGroups): what netlink
	// shows any user.
	Groups []UnownedGroup
}

// Options narrow a report to some processes and say what more it may read.
type Options struct {
	// PIDs, when set, keeps only these processes (and drops unattributed sockets).
	PIDs map[int]bool
	// FS, when set, lets Analyze read more about each process holding
	// CLOSE_WAIT sockets: mapped libraries and Go build info for the runtime,
	// and (when it holds sockets it does not read, or AllThreads) its threads'
	// states and wait channels as evidence. Nil: only the snapshot is used.
	FS *procscan.FS
	// AllThreads reads the threads of every process (with FS), not only of
	// those with unread or never-accepted sockets.
	AllThreads bool
	// Previous, when set, is an earlier snapshot (NewBaseline): each process
	// gets Growth (sockets entering and leaving CLOSE_WAIT, the ETA to its fd
	// limit) and a "growing" finding when it leaves more sockets open than it
	// closes.
	Previous *Baseline
}

// maxThreads bounds the threads read per process.
const maxThreads = 10000

// Analyze judges a snapshot against thresholds. Callers that judge one
// snapshot after another should keep an [Analyzer], which gives the same
// report for less work when little changed.
func Analyze(snap *snapshot.Snapshot, th Thresholds, opt Options) *Report {
	return analyze(nil, snap, th, opt)
}

// analyze is Analyze, remembering in a when it is not nil.
func analyze(a *Analyzer, snap *snapshot.Snapshot, th Thresholds, opt Options) *Report {
	r := &Report{Snapshot: snap, Thresholds: th, Selected: opt.PIDs != nil}
	if opt.Previous != nil {
		r.Sample = snap.Time.Sub(opt.Previous.Time)
	}
	var base *Baseline // growth is computed against it
	if opt.Previous != nil && r.Sample > 0 {
		base = opt.Previous
	}
	if a != nil {
		a.gen++
		a.stats = analyzerStats{}
	}
	var procs []*procWork
	byPID := map[int]*procWork{}
	hints := map[string]procscan.RuntimeHints{}
	var last *procWork // the holder of the previous socket: usually this one's too
	// The holders seen last, by pid modulo 64: a few processes' sockets come
	// interleaved in the kernel's hash order, and a map lookup per socket
	// cost a fifth of the analysis.
	var recent [64]*procWork
	var unowned unownedGroups
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
			unowned.add(s, age, hasAge)
			continue
		}
	owners:
		for j, o := range s.Owners {
			for _, e := range s.Owners[:j] {
				if e.PID == o.PID { // the same process through another fd
					continue owners
				}
			}
			w := last
			if w == nil || w.p.PID != o.PID {
				if opt.PIDs != nil && !opt.PIDs[o.PID] {
					continue
				}
				if r := recent[o.PID&63]; r != nil && r.p.PID == o.PID {
					w = r
				} else {
					w = byPID[o.PID]
				}
				if w == nil {
					p := &ProcessReport{PID: o.PID, Process: snap.Processes[o.PID]}
					p.Runtime, p.RuntimeEvidence, p.Libraries = detectRuntime(p.Process, opt.FS, hints)
					w = a.newWork(p, base)
					if n := w.socketsHint(); n > 0 {
						p.Sockets = make([]*snapshot.Socket, 0, n+n/16+4)
					}
					byPID[o.PID] = w
					procs = append(procs, w)
				}
				last = w
				recent[o.PID&63] = w
			}
			p := w.p
			p.CloseWait++
			if s.NotAccepted {
				p.NotAccepted++
			}
			if hasAge {
				p.HasAge = true
				p.Oldest = max(p.Oldest, age)
			}
			if len(p.Sockets) == cap(p.Sockets) { // double: append grows large slices by 1.25
				p.Sockets = slices.Grow(p.Sockets, len(p.Sockets)+16)
			}
			p.Sockets = append(p.Sockets, s)
			w.add(s, age, hasAge)
		}
	}
	var ports map[int][]uint16
	if len(procs) > 0 {
		ports = listenerPorts(snap)
	}
	for _, w := range procs {
		w.resolve()
		p := w.p
		share := p.FDShare()
		p.Status, p.Reasons = th.Judge(p.CloseWait, share, p.Oldest, p.HasAge)
		if base != nil {
			p.Growth = computeGrowth(p, len(w.before), w.entered, r.Sample)
			judgeGrowth(p)
		}
		if opt.FS != nil && p.Process != nil && (opt.AllThreads || holdsUnread(p)) {
			if ts, err := opt.FS.Threads(p.PID, maxThreads); err == nil {
				p.Threads = SummarizeThreads(ts)
			}
		}
		w.growthDir = "outbound"
		if w.inbound*2 >= len(p.Sockets) {
			w.growthDir = "inbound"
		}
		w.growthOldest = math.Round(p.Oldest.Seconds()*1000) / 1000
		ps := ports[p.PID]
		if ps == nil {
			ps = noPorts
		}
		p.Findings = w.findings(snap, p.Sockets, ps)
		if a != nil {
			a.stats.sockets += w.n
			a.stats.matched += w.matched
			a.stats.recounted += w.recounted
			a.stats.written += w.written
		}
		r.Processes = append(r.Processes, p)
		r.Status = max(r.Status, p.Status)
	}
	if a != nil {
		for id, c := range a.procs {
			if c.gen != a.gen {
				delete(a.procs, id)
			}
		}
	}
	u := &r.Unattributed
	u.Status, u.Reasons = th.Judge(u.Count, 0, u.Oldest, u.HasAge)
	u.Groups = unowned.groups(th)
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

// noPorts are the ports of a process that listens on none.
var noPorts = []uint16{}

// holdsUnread reports whether a process holds sockets it never read or
// never accepted, for which its threads' states are evidence.
func holdsUnread(p *ProcessReport) bool {
	for _, s := range p.Sockets {
		if s.NotAccepted || s.RecvQ > 0 {
			return true
		}
	}
	return false
}

// Judge applies the thresholds to one holder's numbers: its CLOSE_WAIT
// count, its open fds as a share of its soft limit (0: unknown) and its
// oldest CLOSE_WAIT age (when hasAge). It is the one judgement of a process:
// the report, explain, check, watch and the agent all use it. The reasons
// say which thresholds were crossed.
func (th Thresholds) Judge(count int, fdShare float64, oldest time.Duration, hasAge bool) (Status, []string) {
	st := OK
	var why []string
	raise := func(s Status, format string, args ...any) {
		st = max(st, s)
		why = append(why, s.String()+": "+fmt.Sprintf(format, args...))
	}
	if count == 0 {
		return OK, nil
	}
	if s, limit := crossed(count, th.CountWarning, th.CountCritical); s > OK {
		raise(s, "%d CLOSE_WAIT sockets > %d", count, limit)
	}
	if s, limit := crossed(fdShare, th.FDShareWarning, th.FDShareCritical); s > OK {
		raise(s, "fds at %.0f%% of the limit > %.0f%%", fdShare*100, limit*100)
	}
	if s, limit := crossed(oldest, th.AgeWarning, th.AgeCritical); hasAge && s > OK {
		raise(s, "oldest CLOSE_WAIT %s > %s", FormatAge(oldest), FormatAge(limit))
	}
	return st, why
}

// FDShareStatus judges a process's fd usage (open fds over the soft limit,
// 0..1) alone, as the process's status does.
func (th Thresholds) FDShareStatus(share float64) Status {
	s, _ := crossed(share, th.FDShareWarning, th.FDShareCritical)
	return s
}

// AgeStatus judges the age of an oldest CLOSE_WAIT socket alone, as the
// process's status does.
func (th Thresholds) AgeStatus(oldest time.Duration) Status {
	s, _ := crossed(oldest, th.AgeWarning, th.AgeCritical)
	return s
}

// crossed judges v against a warning and a critical threshold (zero turns
// one off) and returns the status with the threshold v is past.
func crossed[T int | float64 | time.Duration](v, warning, critical T) (Status, T) {
	switch {
	case critical > 0 && v > critical:
		return Critical, critical
	case warning > 0 && v > warning:
		return Warning, warning
	}
	return OK, 0
}

// FormatAge prints a duration the way an operator reads it: 850ms, 42s, 7m05s, 3h12m, 2d04h.
func FormatAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
