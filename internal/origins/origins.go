// Package origins joins the creation stacks recorded by package sockorigin
// with a snapshot of the sockets now in CLOSE_WAIT: per process and stack,
// how many of its sockets sit in CLOSE_WAIT, how many closed properly, the
// oldest age and the cause, with the stack symbolised. It is what `closewait
// trace`, `explain --trace` and the agent's /api/v1/origins show.
package origins

import (
	"cmp"
	"encoding/binary"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockorigin"
	"github.com/closewait/closewait/internal/symbolize"
)

// Origin is one creation stack of one process whose sockets are now in
// CLOSE_WAIT.
type Origin struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// How is "connect" or "accept": how the stack's sockets were made.
	How string `json:"how"`
	// Count is how many sockets made here are in CLOSE_WAIT now.
	Count int `json:"count"`
	// Closed is how many sockets made here closed (reached TCP_CLOSE)
	// while traced: 1 leak in 1,000 is a different bug from every one.
	// It is counted per kernel stack: origins that differ only in the
	// caller of a leaf function without a frame pointer share a count.
	Closed           uint64  `json:"closed"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Cause is the most common per-socket cause of its CLOSE_WAIT sockets
	// (diagnose.SocketCause: missing-close, abandoned-unread, pool-idle).
	Cause  string            `json:"cause"`
	Frames []symbolize.Frame `json:"frames"`
	// Hint says what would name the unnamed frames, or "".
	Hint string `json:"hint,omitempty"`
}

// Report is the origins of one trace.
type Report struct {
	Origins []Origin `json:"origins"`
	// Dropped counts socket creations that could not be recorded (full maps).
	Dropped uint64 `json:"dropped"`
	// UnsymbolisedFrames counts the frames of Origins left without a name.
	UnsymbolisedFrames int `json:"unsymbolised_frames"`
	// Recorded counts the recorded sockets still open (any state).
	Recorded int `json:"recorded"`
	// Unmatched counts recorded sockets not among the snapshot's CLOSE_WAIT
	// sockets: open in another state, or gone since.
	Unmatched int `json:"unmatched,omitempty"`
	// AcceptsTraced tells whether sockets made by accept() were being
	// recorded: closewait agent --trace records them only while a traced
	// process holds an accepted CLOSE_WAIT socket (see Table).
	AcceptsTraced bool `json:"accepts_traced"`
}

// Options choose what Build reports.
type Options struct {
	// PIDs, when set, keeps the origins of these processes only.
	PIDs map[int]bool
	// Max bounds the number of origins (worst first); 0 means all.
	Max int
	// PerProcess, when not 0, keeps at most this many origins per process,
	// and MaxProcesses, when not 0, the origins of at most this many
	// processes (those with the worst origins).
	PerProcess, MaxProcesses int
	// Now is the time ages are computed at; zero means the snapshot's time.
	Now time.Time
	// ProcRoot is where to read the command name of a process the snapshot
	// has no facts of (taken without owners); "" is /proc.
	ProcRoot string
}

// Build groups the recorded sockets that are in CLOSE_WAIT in snap by
// (process, stack), worst first: most sockets, then oldest. sym names the
// stacks. It reads the processes' memory maps (through sym) and nothing else.
func Build(smp *sockorigin.Sample, snap *snapshot.Snapshot, sym *symbolize.Symbolizer, opt Options) *Report {
	rep := &Report{Dropped: smp.Dropped, Recorded: len(smp.Sockets), Origins: []Origin{}}
	now := opt.Now
	if now.IsZero() {
		now = snap.Time
	}
	byCookie := make(map[uint64]*snapshot.Socket, len(snap.Sockets))
	for i := range snap.Sockets {
		if s := &snap.Sockets[i]; s.State == sockdiag.CloseWait && s.Cookie != 0 {
			byCookie[s.Cookie] = s
		}
	}
	type group struct {
		o      Origin
		key    sockorigin.StackKey
		pcs    []uint64
		causes map[string]int
	}
	// Grouped by process and full stack: the kernel's, with the leaf's
	// caller the symbolizer puts back (two call sites of connect() in one
	// function differ only there).
	groups := map[string]*group{}
	var kb []byte
	for _, so := range smp.Sockets {
		if so.Cookie == 0 || (opt.PIDs != nil && !opt.PIDs[int(so.TGID)]) {
			continue
		}
		s, ok := byCookie[so.Cookie]
		if !ok {
			rep.Unmatched++
			continue
		}
		stack := smp.Stacks[so.Key.StackID]
		ra, leaf := sym.LeafCaller(int(so.TGID), stack, so.Top[:]) // per socket: no slice made
		kb = binary.NativeEndian.AppendUint32(kb[:0], so.TGID)
		kb = binary.NativeEndian.AppendUint32(kb, so.How)
		for i, pc := range stack {
			kb = binary.NativeEndian.AppendUint64(kb, pc)
			if i == 0 && leaf {
				kb = binary.NativeEndian.AppendUint64(kb, ra)
			}
		}
		g := groups[string(kb)]
		if g == nil {
			pcs := stack
			if leaf {
				pcs = append([]uint64{stack[0], ra}, stack[1:]...)
			}
			g = &group{key: so.Key, pcs: pcs, causes: map[string]int{}, o: Origin{PID: int(so.TGID), How: howName(so.How)}}
			groups[string(kb)] = g
		}
		g.o.Count++
		g.causes[diagnose.SocketCause(s)]++
		age, ok := s.Age()
		if !ok || so.Created.After(now.Add(-age)) {
			age = now.Sub(so.Created) // in CLOSE_WAIT at most since it was made
		}
		g.o.OldestAgeSeconds = max(g.o.OldestAgeSeconds, age.Seconds())
	}
	list := make([]*group, 0, len(groups))
	for _, g := range groups {
		g.o.Closed = smp.Closed[g.key]
		g.o.Cause = topCause(g.causes)
		list = append(list, g)
	}
	slices.SortFunc(list, func(a, b *group) int {
		return cmp.Or(cmp.Compare(b.o.Count, a.o.Count), cmp.Compare(b.o.OldestAgeSeconds, a.o.OldestAgeSeconds),
			cmp.Compare(a.o.PID, b.o.PID), slices.Compare(a.pcs, b.pcs))
	})
	// Select, worst first, before naming the frames: symbolising is the
	// costly part.
	perPID := map[int]int{}
	for _, g := range list {
		if opt.Max > 0 && len(rep.Origins) == opt.Max {
			break
		}
		if opt.PerProcess > 0 && perPID[g.o.PID] == opt.PerProcess {
			continue
		}
		if opt.MaxProcesses > 0 && perPID[g.o.PID] == 0 && len(perPID) == opt.MaxProcesses {
			continue
		}
		perPID[g.o.PID]++
		if p := snap.Processes[g.o.PID]; p != nil {
			g.o.Comm = p.Comm
		} else if b, err := os.ReadFile(procscan.NewFS(opt.ProcRoot).Path(strconv.Itoa(g.o.PID), "comm")); err == nil {
			g.o.Comm = strings.TrimSpace(string(b))
		}
		r := sym.Stack(g.o.PID, g.pcs)
		g.o.Frames, g.o.Hint = r.Frames, r.Hint
		if g.o.Frames == nil {
			g.o.Frames = []symbolize.Frame{}
			g.o.Hint = "the kernel kept no frames for this stack"
		}
		rep.Origins = append(rep.Origins, g.o)
	}
	for _, o := range rep.Origins {
		for _, f := range o.Frames {
			if !f.Named() {
				rep.UnsymbolisedFrames++
			}
		}
	}
	return rep
}

func howName(h uint32) string {
	if h == sockorigin.Accepted {
		return "accept"
	}
	return "connect"
}

// topCause is the most frequent cause, ties broken by name.
func topCause(m map[string]int) string {
	best, n := "", -1
	for c, k := range m {
		if k > n || (k == n && c < best) {
			best, n = c, k
		}
	}
	return best
}
