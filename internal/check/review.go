package check

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Holder is a process holding CLOSE_WAIT sockets, with its fd facts.
type Holder struct {
	PID       int
	Comm      string
	Cmdline   string
	CloseWait int // CLOSE_WAIT sockets it holds
	Keepalive int // of which with SO_KEEPALIVE set (keepalive timer armed)
	OpenFDs   int
	FDSoft    uint64 // soft RLIMIT_NOFILE; procscan.Unlimited; 0 if unknown
	FDHard    uint64
	// FDsUnknown is set when the open fds could not be counted (another
	// user's process, without privilege): OpenFDs is then 0.
	FDsUnknown bool
	// Oldest is its oldest CLOSE_WAIT socket's age, when HasAge.
	Oldest time.Duration
	HasAge bool
}

// Holders lists the processes holding CLOSE_WAIT sockets in snap (only
// those in pids when it is non-empty), and counts the CLOSE_WAIT sockets and
// those with SO_KEEPALIVE, for the whole snapshot (not only pids).
func Holders(snap *snapshot.Snapshot, pids map[int]bool) (holders []Holder, closeWait, keepalive int) {
	byPID := map[int]*Holder{}
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.State != sockdiag.CloseWait {
			continue
		}
		closeWait++
		ka := s.KeepaliveSet()
		if ka {
			keepalive++
		}
		seen := map[int]bool{}
		for _, o := range s.Owners {
			if seen[o.PID] || (len(pids) > 0 && !pids[o.PID]) {
				continue
			}
			seen[o.PID] = true
			h := byPID[o.PID]
			if h == nil {
				h = &Holder{PID: o.PID}
				if p := snap.Processes[o.PID]; p != nil {
					h.Comm, h.Cmdline, h.OpenFDs, h.FDSoft, h.FDHard = p.Comm, p.Cmdline, p.OpenFDs, p.FDSoft, p.FDHard
					for _, m := range p.Missing {
						h.FDsUnknown = h.FDsUnknown || strings.HasPrefix(m, "open fds")
					}
				}
				byPID[o.PID] = h
			}
			h.CloseWait++
			if ka {
				h.Keepalive++
			}
			if a, ok := s.Age(); ok {
				h.Oldest, h.HasAge = max(h.Oldest, a), true
			}
		}
	}
	for _, h := range byPID {
		holders = append(holders, *h)
	}
	slices.SortFunc(holders, func(a, b Holder) int { return cmp.Compare(a.PID, b.PID) })
	return holders, closeWait, keepalive
}

// Thresholds are what check judges by. Zero values take the defaults.
type Thresholds struct {
	// Process judges each process holding CLOSE_WAIT: the report's
	// thresholds and judgement (diagnose.Thresholds.Judge), so check and the
	// report never disagree on a process. Zero: diagnose.DefaultThresholds.
	Process diagnose.Thresholds
	// FileShare warns when the host's allocated file handles (fs.file-nr)
	// exceed this share of fs.file-max (default 0.8).
	FileShare float64
}

// DefaultThresholds are the report's, and 80% of fs.file-max.
var DefaultThresholds = Thresholds{Process: diagnose.DefaultThresholds, FileShare: 0.8}

// Setting is one reviewed sysctl.
type Setting struct {
	Name  string
	Value string
	// Matters says whether the setting has a bearing on this host's CLOSE_WAIT sockets now.
	Matters     bool
	Status      diagnose.Status
	Explanation string
}

// HolderReview is the review of one process holding CLOSE_WAIT sockets.
type HolderReview struct {
	Holder
	Usage  float64 // OpenFDs / FDSoft; 0 when the limit is unknown or unlimited
	Status diagnose.Status
	Advice []string
}

// Result is the review of a host.
type Result struct {
	Status    diagnose.Status
	CloseWait int // CLOSE_WAIT sockets on the host
	Keepalive int // of which with SO_KEEPALIVE
	Holders   []HolderReview
	Settings  []Setting
	// Summary says in plain words what matters and what does not.
	Summary []string
}

// Review judges the settings and the holders' limits.
func Review(sys *Sysctls, holders []Holder, closeWait, keepalive int, th Thresholds) *Result {
	if th.Process == (diagnose.Thresholds{}) {
		th.Process = diagnose.DefaultThresholds
	}
	if th.FileShare <= 0 {
		th.FileShare = DefaultThresholds.FileShare
	}
	r := &Result{CloseWait: closeWait, Keepalive: keepalive}
	for _, h := range holders {
		r.Holders = append(r.Holders, reviewHolder(h, sys, th))
	}
	slices.SortStableFunc(r.Holders, func(a, b HolderReview) int {
		return cmp.Or(cmp.Compare(b.Status, a.Status), cmp.Compare(b.Usage, a.Usage), cmp.Compare(b.CloseWait, a.CloseWait))
	})
	for _, h := range r.Holders {
		r.Status = max(r.Status, h.Status)
	}
	r.Settings = reviewSettings(sys, holders, closeWait, keepalive, th)
	for _, s := range r.Settings {
		r.Status = max(r.Status, s.Status)
	}
	r.Summary = summary(r, sys)
	return r
}

func reviewHolder(h Holder, sys *Sysctls, th Thresholds) HolderReview {
	hr := HolderReview{Holder: h}
	name := fmt.Sprintf("pid %d (%s)", h.PID, h.Comm)
	judge := func(share float64) {
		var why []string
		hr.Status, why = th.Process.Judge(h.CloseWait, share, h.Oldest, h.HasAge)
		for _, w := range why {
			hr.Advice = append(hr.Advice, name+": "+w)
		}
	}
	switch {
	case h.FDSoft == 0:
		hr.Advice = append(hr.Advice, name+": its fd limit could not be read (run as root)")
		judge(0)
		return hr
	case h.FDSoft == procscan.Unlimited:
		hr.Advice = append(hr.Advice, name+": no fd limit (unlimited); fs.file-max is its only ceiling")
		judge(0)
		return hr
	}
	pct := func(f float64) string { return strconv.Itoa(int(f*100+0.5)) + "%" }
	if h.FDsUnknown {
		// The CLOSE_WAIT sockets are fds too: a lower bound of the share.
		least := float64(h.CloseWait) / float64(h.FDSoft)
		hr.Advice = append(hr.Advice, fmt.Sprintf("%s: its open fds could not be counted (run as root); soft limit %d, %d CLOSE_WAIT sockets (%s of the limit at least)",
			name, h.FDSoft, h.CloseWait, pct(least)))
		judge(least)
		return hr
	}
	hr.Usage = float64(h.OpenFDs) / float64(h.FDSoft)
	line := fmt.Sprintf("%s: %d open fds of its soft limit %d (%s), %d of them CLOSE_WAIT", name, h.OpenFDs, h.FDSoft, pct(hr.Usage), h.CloseWait)
	hr.Advice = append(hr.Advice, line)
	judge(hr.Usage)
	for _, a := range hr.Advice[1:] {
		if strings.Contains(a, ": fds at ") { // the fd share crossed a threshold
			hr.Advice[0] += ": at 100% accept() and open() fail with EMFILE (\"too many open files\")"
			break
		}
	}
	if h.FDHard > h.FDSoft {
		hard := strconv.FormatUint(h.FDHard, 10)
		if h.FDHard == procscan.Unlimited {
			hard = "unlimited"
		}
		hr.Advice = append(hr.Advice, fmt.Sprintf("its soft limit can be raised up to the hard limit %s without privilege (prlimit --pid %d --nofile=%s:%s now, LimitNOFILE= in its systemd unit, ulimit -n): that buys time, it does not stop the leak", hard, h.PID, hard, hard))
	} else if sys.NrOpen > 0 && h.FDHard >= sys.NrOpen {
		hr.Advice = append(hr.Advice, fmt.Sprintf("its hard limit is at fs.nr_open (%d): a higher limit needs fs.nr_open raised first", sys.NrOpen))
	}
	if sys.FileMax > 0 && h.FDSoft != procscan.Unlimited && h.FDSoft > sys.FileMax {
		hr.Advice = append(hr.Advice, fmt.Sprintf("its soft limit %d is above fs.file-max %d: the whole host would run out of files (ENFILE) before this process reaches its own limit (fs.file-max is judged among the settings)", h.FDSoft, sys.FileMax))
	}
	return hr
}

func reviewSettings(sys *Sysctls, holders []Holder, closeWait, keepalive int, th Thresholds) []Setting {
	var out []Setting
	missing := func(name string) bool {
		for _, m := range sys.Missing {
			if len(m) > len(name) && m[:len(name)] == name && m[len(name)] == ':' {
				return true
			}
		}
		return false
	}
	add := func(s Setting) {
		if missing(s.Name) {
			s.Value, s.Matters, s.Status = "?", false, diagnose.OK
			s.Explanation = "could not be read. " + s.Explanation
		}
		out = append(out, s)
	}

	// File handles: every CLOSE_WAIT socket holds one until the app closes it.
	share := 0.0
	if sys.FileMax > 0 && sys.HasFileNr {
		share = float64(sys.FileAllocated) / float64(sys.FileMax)
	}
	fm := Setting{Name: FileMax, Value: strconv.FormatUint(sys.FileMax, 10), Matters: true,
		Explanation: "the host's limit of open files: each CLOSE_WAIT socket holds one until its process closes it; reaching it makes every process fail with ENFILE"}
	fn := Setting{Name: FileNr, Value: fmt.Sprintf("%d allocated", sys.FileAllocated), Matters: true,
		Explanation: fmt.Sprintf("file handles in use on the host: %.1f%% of fs.file-max", share*100)}
	if share > th.FileShare {
		fn.Status = diagnose.Warning
		fn.Explanation = fmt.Sprintf("file handles in use on the host are at %.0f%% of fs.file-max (> %.0f%%): new sockets and files will soon fail with ENFILE; find the processes holding them (closewait) before raising fs.file-max", share*100, th.FileShare*100)
	}
	maxSoft := uint64(0)
	for _, h := range holders {
		if h.FDSoft != procscan.Unlimited {
			maxSoft = max(maxSoft, h.FDSoft)
		}
	}
	if sys.FileMax > 0 && maxSoft > sys.FileMax {
		fm.Status = diagnose.Warning
		fm.Explanation += fmt.Sprintf("; it is lower than the fd limit of a process holding CLOSE_WAIT (%d), so the host runs out first", maxSoft)
	}
	add(fm)
	add(fn)
	add(Setting{Name: NrOpen, Value: strconv.FormatUint(sys.NrOpen, 10), Matters: false,
		Explanation: "the ceiling of any process's fd limit: it matters only if you raise a process's limit above it; it frees nothing"})

	// Keepalive.
	total := sys.KeepaliveTime + time.Duration(sys.KeepaliveProbes)*sys.KeepaliveIntvl
	var kaWhy string
	if keepalive == 0 {
		kaWhy = fmt.Sprintf("does not matter here: none of the %d CLOSE_WAIT sockets has SO_KEEPALIVE set, and these settings only apply to sockets whose application set it", closeWait)
	} else {
		kaWhy = fmt.Sprintf("matters only for the %d of %d CLOSE_WAIT sockets whose application set SO_KEEPALIVE: after %s idle a probe goes out; once the peer has dropped its FIN_WAIT2 end (the peer's tcp_fin_timeout) the probe draws a RST and the kernel drops the socket, but the fd stays open in the application, so it is a workaround, not a fix",
			keepalive, closeWait, diagnose.FormatAge(sys.KeepaliveTime))
	}
	kt := Setting{Name: KeepaliveTime, Value: secs(sys.KeepaliveTime), Matters: keepalive > 0, Explanation: "idle time before the first keepalive probe; " + kaWhy}
	if sys.KeepaliveTime > 0 && sys.KeepaliveTime < 10*time.Minute {
		kt.Explanation += fmt.Sprintf("; at %s it is short (default 7200 s): it adds probe traffic on every keepalive connection and hides CLOSE_WAIT sockets from the kernel table without closing their fds", secs(sys.KeepaliveTime))
	}
	add(kt)
	add(Setting{Name: KeepaliveIntvl, Value: secs(sys.KeepaliveIntvl), Matters: keepalive > 0,
		Explanation: fmt.Sprintf("time between unanswered probes; a dead peer is given up after tcp_keepalive_time + probes x intvl = %s (on sockets with SO_KEEPALIVE only)", diagnose.FormatAge(total))})
	add(Setting{Name: KeepaliveProbes, Value: strconv.Itoa(sys.KeepaliveProbes), Matters: keepalive > 0,
		Explanation: "unanswered probes before the connection is dropped (on sockets with SO_KEEPALIVE only)"})
	add(Setting{Name: FinTimeout, Value: secs(sys.FinTimeout), Matters: false,
		Explanation: "does not matter for CLOSE_WAIT: it limits how long an orphaned FIN_WAIT2 socket lasts on the side that closed first (the peer), and the kernel has no timer for CLOSE_WAIT; lowering it on this host frees none of its CLOSE_WAIT sockets"})
	return out
}

func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }

// summary says what matters, in plain words.
func summary(r *Result, sys *Sysctls) []string {
	var out []string
	switch n := len(r.Holders); {
	case r.CloseWait == 0:
		out = append(out, "No CLOSE_WAIT sockets now: nothing here is under pressure from them.")
	case n == 0:
		out = append(out, fmt.Sprintf("%s, no owner found (run as root to see fd limits).", diagnose.Count(r.CloseWait, "CLOSE_WAIT socket")))
	default:
		warn := 0
		for _, h := range r.Holders {
			if h.Status > diagnose.OK {
				warn++
			}
		}
		procs := "processes"
		if n == 1 {
			procs = "process"
		}
		out = append(out, fmt.Sprintf("What matters: the fd limits of the %d %s holding CLOSE_WAIT (%d near their limit) and the host's file limit (fs.file-max).", n, procs, warn))
	}
	if r.Keepalive == 0 {
		out = append(out, "What does not: tcp_keepalive_* (no CLOSE_WAIT socket has SO_KEEPALIVE), tcp_fin_timeout (it times out the peer's FIN_WAIT2, never CLOSE_WAIT), fs.nr_open (only a ceiling for raising limits).")
	} else {
		out = append(out, fmt.Sprintf("Keepalive matters for %s (SO_KEEPALIVE set): they leave the kernel table after the peer's FIN_WAIT2 expires and a probe is answered by a RST, but their fds stay open. tcp_fin_timeout and fs.nr_open do not matter.", diagnose.Count(r.Keepalive, "CLOSE_WAIT socket")))
	}
	if len(sys.Missing) > 0 {
		out = append(out, fmt.Sprintf("Could not read %d settings (see the ones marked ?).", len(sys.Missing)))
	}
	out = append(out, "No setting closes a CLOSE_WAIT socket: the application has to call close() (after EOF, errors and timeouts); raising limits only buys time.")
	return out
}
