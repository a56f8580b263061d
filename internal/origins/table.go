package origins

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockorigin"
	"github.com/closewait/closewait/internal/symbolize"
)

// Table keeps the origins of the CLOSE_WAIT sockets for a long-running
// command (closewait agent --trace). Each Update traces every process that
// holds CLOSE_WAIT sockets in the snapshot (from then on: sockets made
// earlier have no recorded stack), stops tracing processes that exited, and
// rebuilds the report: the worst PerProcess origins of each process, for
// the worst MaxProcesses processes (by their worst origin), so that a
// process with a small leak keeps its origins beside a big one. Safe for
// concurrent use.
//
// The recorder's accept hook, which every system call on the host pays
// for, stays attached for the first acceptsLinger Updates, then only while
// a traced process holds an accepted (inbound) CLOSE_WAIT socket, and for
// acceptsLinger Updates after the last one: the
// leaks a pool makes to its upstream (outbound) need only the connect
// hook. A process whose accepted sockets start leaking gets their origins
// from the Update that first sees one.
type Table struct {
	rec  *sockorigin.Recorder
	fs   procscan.FS
	max  int
	root string

	mu     sync.Mutex
	sym    *symbolize.Symbolizer
	traced map[int]bool
	latest *Report
	err    error
	// sinceInbound counts the Updates since a traced process last held an
	// accepted CLOSE_WAIT socket.
	sinceInbound int
}

// acceptsLinger is how many Updates the accept hook stays attached after
// no traced process holds an accepted CLOSE_WAIT socket (at the agent's
// 15 s, 5 minutes): normal half-closes come and go.
const acceptsLinger = 20

// sweepKeep is how many Updates in a row a binary that no traced stack
// used stays open and parsed (a process's modules are looked up again each
// Update, after Forget).
const sweepKeep = 10

// Bounds of a Table's report.
const (
	PerProcess   = 5   // origins kept per process
	MaxProcesses = 200 // processes with origins kept
)

// NewTable makes a table over rec, which it does not close, reading
// processes under procfs root; perProcess bounds the origins kept per
// process (0 means PerProcess), for at most MaxProcesses processes.
func NewTable(rec *sockorigin.Recorder, root string, perProcess int) *Table {
	if perProcess <= 0 {
		perProcess = PerProcess
	}
	return &Table{rec: rec, fs: procscan.NewFS(root), root: root, max: perProcess,
		sym: symbolize.New(root), traced: map[int]bool{}}
}

// Update traces the CLOSE_WAIT holders of snap and rebuilds the report.
func (t *Table) Update(snap *snapshot.Snapshot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.traced {
		if _, err := os.Stat(t.fs.Path(strconv.Itoa(pid))); errors.Is(err, os.ErrNotExist) {
			_ = t.rec.RemovePID(pid)
			delete(t.traced, pid)
		}
	}
	for pid := range snap.Processes {
		if !t.traced[pid] && len(t.traced) < sockorigin.MaxPIDs {
			if err := t.rec.AddPID(pid); err != nil {
				t.err = err
				return err
			}
			t.traced[pid] = true
		}
	}
	t.sinceInbound++
	if t.holdsInbound(snap) {
		t.sinceInbound = 0
	}
	if err := t.rec.SetAccepts(t.sinceInbound <= acceptsLinger); err != nil {
		t.err = fmt.Errorf("origins: %w", err)
		return t.err
	}
	pids := make([]int, 0, len(t.traced))
	for pid := range t.traced {
		pids = append(pids, pid)
		t.sym.Forget(pid) // memory maps change (dlopen, JIT code)
	}
	smp, err := t.rec.Sample(NetNSPaths(t.fs, pids)...)
	if err != nil {
		t.err = fmt.Errorf("origins: %w", err)
		return t.err
	}
	rep := Build(smp, snap, t.sym, Options{ProcRoot: t.root, PerProcess: t.max, MaxProcesses: MaxProcesses})
	t.sym.Sweep(sweepKeep)
	rep.AcceptsTraced = t.rec.Accepts()
	t.latest, t.err = rep, nil
	return nil
}

// holdsInbound reports whether a traced process holds an accepted
// CLOSE_WAIT socket in snap.
func (t *Table) holdsInbound(snap *snapshot.Snapshot) bool {
	for i := range snap.Sockets {
		s := &snap.Sockets[i]
		if s.State != sockdiag.CloseWait || !s.Inbound() {
			continue
		}
		for _, o := range s.Owners {
			if t.traced[o.PID] {
				return true
			}
		}
	}
	return false
}

// Report returns the latest report (nil before the first Update) and the
// latest Update's error.
func (t *Table) Report() (*Report, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.latest, t.err
}

// Close releases the symbolizer's files; the recorder is the caller's.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sym.Close()
}

// NetNSPaths returns one path to each network namespace of pids, "" for
// the caller's own: where Recorder.Sample must look for their sockets.
func NetNSPaths(fs procscan.FS, pids []int) []string {
	own, err := netns.Current()
	if err != nil {
		return nil
	}
	seen := map[uint64]bool{}
	var out []string
	for _, pid := range pids {
		p := fs.Path(strconv.Itoa(pid), "ns", "net")
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		if st.Ino == own {
			p = ""
		}
		out = append(out, p)
	}
	return out
}
