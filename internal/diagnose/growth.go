package diagnose

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"time"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Growth compares a process's CLOSE_WAIT sockets in two snapshots.
type Growth struct {
	Interval time.Duration // time between the snapshots
	Before   int           // CLOSE_WAIT sockets it held in the first
	Entered  int           // sockets in the second that were not in the first
	Left     int           // sockets in the first that are gone from the second (closed)
	// EnteredPerMin, LeftPerMin and NetPerMin are the rates per minute.
	EnteredPerMin, LeftPerMin, NetPerMin float64
	// ETA is the time until the process reaches its soft fd limit at the net
	// growth rate; valid when HasETA (growing, with a known finite limit).
	ETA    time.Duration
	HasETA bool
	// InFlight is set when the process holds few sockets, all young (see
	// NormalHalfCloseMax and NormalHalfCloseAge): a rise then is more likely
	// connections caught while closing normally than a leak.
	InFlight bool
}

// Growing reports whether the process opened more CLOSE_WAIT sockets than it
// closed (the churn rule in design.md), beyond connections caught in flight.
func (g *Growth) Growing() bool { return g != nil && g.Entered > g.Left && !g.InFlight }

// GrowthETACritical is how soon fd exhaustion at the measured rate makes the
// status critical.
const GrowthETACritical = 15 * time.Minute

// sockKey identifies a socket across snapshots: the kernel's cookie (from
// netlink), else the inode (from /proc/net/tcp), else a hash of the 4-tuple
// and namespace (a socket in an accept queue, read from /proc/net/tcp).
type sockKey uint64

var tupleSeed = maphash.MakeSeed()

func keyOf(s *snapshot.Socket) sockKey {
	switch {
	case s.Cookie != 0:
		return sockKey(s.Cookie)
	case s.Inode != 0:
		return sockKey(s.Inode | 1<<63)
	}
	return sockKey(maphash.Comparable(tupleSeed, struct {
		netns         uint64
		local, remote netip.AddrPort
	}{s.NetNS, s.Local, s.Remote}))
}

// Baseline is an earlier snapshot as growth needs it: when it was taken,
// its CLOSE_WAIT count, and its CLOSE_WAIT sockets indexed by holder. Build
// it once with NewBaseline and reuse it for every Analyze it serves (watch
// compares each tick with the same baseline for a whole window); the
// snapshot itself need not be kept.
type Baseline struct {
	Time      time.Time
	CloseWait int // CLOSE_WAIT sockets on the host then
	byPID     map[int]map[sockKey]struct{}
}

// NewBaseline indexes snap for growth; nil for a nil snapshot.
func NewBaseline(snap *snapshot.Snapshot) *Baseline {
	if snap == nil {
		return nil
	}
	return &Baseline{Time: snap.Time, CloseWait: snap.States[sockdiag.CloseWait], byPID: closeWaitByPID(snap)}
}

// closeWaitByPID indexes a snapshot's CLOSE_WAIT sockets by holder. Each
// holder's set is sized once (a set that grows leaves its smaller tables
// behind): watch keeps up to three of these, 100k sockets each on a big host.
func closeWaitByPID(snap *snapshot.Snapshot) map[int]map[sockKey]struct{} {
	count := map[int]int{}
	for i := range snap.Sockets {
		if s := &snap.Sockets[i]; s.State == sockdiag.CloseWait {
			for _, o := range s.Owners {
				count[o.PID]++
			}
		}
	}
	out := make(map[int]map[sockKey]struct{}, len(count))
	for pid, n := range count {
		out[pid] = make(map[sockKey]struct{}, n)
	}
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.State != sockdiag.CloseWait {
			continue
		}
		k := keyOf(s)
		for _, o := range s.Owners {
			out[o.PID][k] = struct{}{}
		}
	}
	return out
}

// computeGrowth is the growth of a process's sockets now, of which entered
// were not among the before it held in the baseline.
func computeGrowth(p *ProcessReport, before, entered int, interval time.Duration) *Growth {
	g := &Growth{Interval: interval, Before: before, Entered: entered}
	// A process lists each socket once, so the sockets still here are
	// len(p.Sockets) - Entered, and the rest of before has left.
	g.Left = max(before-(len(p.Sockets)-g.Entered), 0)
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

// growthFinding is the finding for a process whose CLOSE_WAIT count grows;
// direction and oldest (seconds) are those of its sockets.
func growthFinding(p *ProcessReport, direction string, oldest float64) (Finding, bool) {
	g := p.Growth
	if !g.Growing() {
		return Finding{}, false
	}
	f := Finding{Cause: "growing", Direction: direction, Count: p.CloseWait}
	f.Oldest = oldest
	f.Evidence = append(f.Evidence, fmt.Sprintf(
		"%s entered CLOSE_WAIT and %d left in %s (%s/min in, %s/min out): it leaves more sockets open than it closes",
		Count(g.Entered, "socket"), g.Left, FormatAge(g.Interval), rate(g.EnteredPerMin), rate(g.LeftPerMin)))
	if g.HasETA {
		pr := p.Process
		f.Evidence = append(f.Evidence, fmt.Sprintf("%d of %d fds open: at %s/min it reaches the fd limit (EMFILE, \"too many open files\") in about %s",
			pr.OpenFDs, pr.FDSoft, rate(g.NetPerMin), FormatAge(g.ETA)))
	}
	return f, true
}

// judgeGrowth raises a process's status for growth: warning when it grows,
// critical when the fd limit is near at that rate.
func judgeGrowth(p *ProcessReport) {
	g := p.Growth
	if !g.Growing() {
		return
	}
	st := Warning
	why := fmt.Sprintf("CLOSE_WAIT growing: +%d -%d in %s (net %s/min)", g.Entered, g.Left, FormatAge(g.Interval), rate(g.NetPerMin))
	if g.HasETA && g.ETA < GrowthETACritical {
		st = Critical
		why += fmt.Sprintf(", fd limit in about %s", FormatAge(g.ETA))
	}
	p.Status = max(p.Status, st)
	p.Reasons = append(p.Reasons, st.String()+": "+why)
}

func rate(v float64) string {
	if v >= 10 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
