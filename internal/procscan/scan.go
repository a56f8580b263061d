package procscan

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FS reads a procfs tree.
type FS struct {
	root   string
	isProc bool // root is a real procfs mount (stat sizes of fd dirs are fd counts)
	// secrets keeps command lines as they are instead of redacting them.
	secrets bool
}

// ShowingSecrets returns fs reading command lines as they are when show is
// true. By default Process redacts secret-looking arguments (see package redact).
func (fs FS) ShowingSecrets(show bool) FS {
	fs.secrets = show
	return fs
}

// DefaultRoot is where procfs is mounted.
const DefaultRoot = "/proc"

// NewFS returns an FS rooted at root; an empty root means DefaultRoot.
func NewFS(root string) FS {
	if root == "" {
		root = DefaultRoot
	}
	var st unix.Statfs_t
	isProc := unix.Statfs(root, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC
	return FS{root: root, isProc: isProc}
}

// Root returns the procfs mount point.
func (fs FS) Root() string { return fs.root }

// Path joins elements under the procfs root: the one place paths are built.
func (fs FS) Path(elem ...string) string {
	return filepath.Join(append([]string{fs.root}, elem...)...)
}

func (fs FS) pidPath(pid int, elem ...string) string {
	return filepath.Join(append([]string{fs.root, strconv.Itoa(pid)}, elem...)...)
}

// Owner is one holder of a socket: a process and the fd number it holds it
// under. FD is -1 for a socket that waits in a listener's accept queue and so
// has no fd yet.
type Owner struct {
	PID int
	FD  int
}

// ScanOptions tune FindOwners. The zero value is the fast default.
type ScanOptions struct {
	// Workers is the number of parallel readers; zero means GOMAXPROCS.
	Workers int
	// UIDs, when set, lists the uids of the wanted sockets: processes running
	// as one of them are visited first.
	UIDs map[uint32]bool
	// Complete visits every process even after all wanted inodes are found,
	// so sockets passed to unrelated processes are attributed too.
	Complete bool
	// OnlyPIDs, when set, restricts the scan to these processes.
	OnlyPIDs map[int]bool
	// Likely lists processes likely to hold the wanted sockets, most likely
	// first: with a SocketFDPIDSource they are searched alone, in order,
	// until every socket is found, and the pass over every process runs
	// only if some socket is still missing. Ignored by the /proc walk and
	// with Complete.
	Likely []int
	// Source, when set, finds owners in one pass instead of the /proc walk;
	// if it fails, FindOwners falls back to the walk and records why in
	// ScanResult.Fallback.
	Source SocketFDSource
}

// ScanResult is the outcome of FindOwners.
type ScanResult struct {
	// Owners maps each wanted inode that was found to every (pid, fd) holding it,
	// sorted by pid then fd.
	Owners map[uint64][]Owner
	// Processes is the number of processes listed in procfs.
	Processes int
	// Visited counts processes whose fd table was read.
	Visited int
	// Skipped counts processes not read because every wanted inode was found.
	Skipped int
	// Vanished counts processes (or fd tables) that disappeared mid-scan.
	Vanished int
	// Denied counts processes whose fd table could not be read for lack of privilege.
	Denied int
	// DeniedPIDs lists those processes (at most 64 are kept).
	DeniedPIDs []int
	// FDs counts the fd links read (or socket fds reported by a Source).
	FDs int
	// Method is how owners were found: "proc" (the /proc walk) or "ebpf".
	Method string
	// Targeted is the number of likely processes (ScanOptions.Likely)
	// searched alone before, or instead of, the pass over every process.
	Targeted int
	// Fallback is why a Source was not used, when it failed.
	Fallback error
}

type procEntry struct {
	pid  int
	ppid int
	uid  uint32
	fds  int64
}

// FindOwners finds every process holding one of the wanted socket inodes.
func (fs FS) FindOwners(wanted map[uint64]struct{}, opt ScanOptions) (*ScanResult, error) {
	var fallback error
	if opt.Source != nil {
		res, err := fs.findOwnersFrom(opt.Source, wanted, opt)
		if err == nil {
			return res, nil
		}
		fallback = err
	}
	res := &ScanResult{Owners: make(map[uint64][]Owner, len(wanted)), Method: "proc", Fallback: fallback}
	procs, err := fs.listProcs(opt.OnlyPIDs)
	if err != nil {
		return nil, err
	}
	res.Processes = len(procs)
	if len(wanted) == 0 {
		res.Skipped = len(procs)
		return res, nil
	}
	slices.SortFunc(procs, func(a, b procEntry) int {
		if opt.UIDs != nil {
			am, bm := opt.UIDs[a.uid], opt.UIDs[b.uid]
			if am != bm {
				if am {
					return -1
				}
				return 1
			}
		}
		return cmp.Compare(b.fds, a.fds)
	})

	sc := newScanState(wanted)
	stopEarly := !opt.Complete
	visited := make([]bool, len(procs))
	sc.run(fs, procs, visited, opt.Workers, stopEarly)

	if stopEarly && sc.remaining.Load() == 0 {
		// Every wanted inode has an owner: now visit the owners' relatives,
		// which may share the same sockets after fork.
		rel := fs.relatives(procs, visited, sc.ownerPIDs())
		if len(rel) > 0 {
			sub := make([]procEntry, 0, len(rel))
			idx := make([]int, 0, len(rel))
			for _, i := range rel {
				sub = append(sub, procs[i])
				idx = append(idx, i)
			}
			subVisited := make([]bool, len(sub))
			sc.run(fs, sub, subVisited, opt.Workers, false)
			for j, v := range subVisited {
				visited[idx[j]] = v
			}
		}
	}
	for _, v := range visited {
		if !v {
			res.Skipped++
		}
	}
	res.Visited = len(procs) - res.Skipped
	res.Vanished = int(sc.vanished.Load())
	res.Denied = int(sc.denied.Load())
	res.DeniedPIDs = sc.deniedPIDs
	res.FDs = int(sc.fds.Load())
	for _, h := range sc.hits {
		res.Owners[h.inode] = append(res.Owners[h.inode], Owner{PID: h.pid, FD: h.fd})
	}
	for ino, os := range res.Owners {
		slices.SortFunc(os, func(a, b Owner) int {
			return cmp.Or(cmp.Compare(a.PID, b.PID), cmp.Compare(a.FD, b.FD))
		})
		res.Owners[ino] = slices.CompactFunc(os, func(a, b Owner) bool { return a == b })
	}
	return res, nil
}

// listProcs lists the processes of procfs with their uid and fd count, from
// one stat of /proc/PID/fd each (owner = the process's uid; size = fd count
// on Linux ≥ 6.2, 0 before).
func (fs FS) listProcs(only map[int]bool) ([]procEntry, error) {
	d, err := os.Open(fs.root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	procs := make([]procEntry, 0, len(names))
	for _, n := range names {
		pid, ok := atoiBytes(n)
		if !ok || pid <= 0 {
			continue
		}
		if only != nil && !only[pid] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fs.pidPath(pid, "fd"), &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				continue // gone already
			}
			// Not even stat-able: keep it, the read will count it.
		}
		fds := st.Size
		if !fs.isProc {
			fds = 0
		}
		procs = append(procs, procEntry{pid: pid, ppid: -1, uid: st.Uid, fds: fds})
	}
	return procs, nil
}

type hit struct {
	inode uint64
	pid   int
	fd    int
}

type scanState struct {
	wanted    map[uint64]int32 // inode -> index into found
	found     []atomic.Bool
	remaining atomic.Int64

	vanished, denied, fds atomic.Int64

	mu         sync.Mutex
	hits       []hit
	deniedPIDs []int
}

func newScanState(wanted map[uint64]struct{}) *scanState {
	s := &scanState{wanted: make(map[uint64]int32, len(wanted)), found: make([]atomic.Bool, len(wanted))}
	i := int32(0)
	for ino := range wanted {
		s.wanted[ino] = i
		i++
	}
	s.remaining.Store(int64(len(wanted)))
	return s
}

func (s *scanState) ownerPIDs() map[int]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[int]bool)
	for _, h := range s.hits {
		m[h.pid] = true
	}
	return m
}

// run reads the fd tables of procs on workers, marking visited[i] for each
// process read; with stopEarly it stops taking new processes once every
// wanted inode is found.
func (s *scanState) run(fs FS, procs []procEntry, visited []bool, workers int, stopEarly bool) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(procs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newFDReader()
			var local []hit
			for {
				if stopEarly && s.remaining.Load() == 0 {
					break
				}
				i := int(next.Add(1) - 1)
				if i >= len(procs) {
					break
				}
				visited[i] = true
				local = s.scanProc(fs, r, procs[i].pid, local)
			}
			if len(local) > 0 {
				s.mu.Lock()
				s.hits = append(s.hits, local...)
				s.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (s *scanState) scanProc(fs FS, r *fdReader, pid int, local []hit) []hit {
	n, err := r.each(fs.pidPath(pid, "fd"), func(fd int, inode uint64) {
		idx, ok := s.wanted[inode]
		if !ok {
			return
		}
		local = append(local, hit{inode: inode, pid: pid, fd: fd})
		if s.found[idx].CompareAndSwap(false, true) {
			s.remaining.Add(-1)
		}
	})
	s.fds.Add(int64(n))
	switch {
	case err == nil:
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		s.denied.Add(1)
		s.mu.Lock()
		if len(s.deniedPIDs) < 64 {
			s.deniedPIDs = append(s.deniedPIDs, pid)
		}
		s.mu.Unlock()
	default: // ENOENT, ESRCH: the process exited while we looked
		s.vanished.Add(1)
	}
	return local
}

// relatives returns the indexes of unvisited processes that are the parent
// or a child of an owner: fork shares sockets between them. Siblings are not
// searched: a supervisor's children are all siblings, and a socket two
// siblings inherited is normally still held by their parent, found as such.
func (fs FS) relatives(procs []procEntry, visited []bool, owners map[int]bool) []int {
	ppid := func(i int) int {
		if procs[i].ppid < 0 {
			procs[i].ppid = fs.readPPID(procs[i].pid)
		}
		return procs[i].ppid
	}
	ownerParents := map[int]bool{}
	for i := range procs {
		if owners[procs[i].pid] {
			if p := ppid(i); p > 2 {
				ownerParents[p] = true
			}
		}
	}
	var out []int
	for i := range procs {
		if !visited[i] && (ownerParents[procs[i].pid] || owners[ppid(i)]) {
			out = append(out, i)
		}
	}
	return out
}

// readPPID reads the parent pid from /proc/PID/stat, or 0.
func (fs FS) readPPID(pid int) int {
	b, err := os.ReadFile(fs.pidPath(pid, "stat"))
	if err != nil {
		return 0
	}
	st, err := parseStat(b)
	if err != nil {
		return 0
	}
	return st.PPID
}

// StillOwns reports whether pid still holds inode at fd: a cheap check (one
// readlink) that lets a long-running watcher reuse owners it found before.
func (fs FS) StillOwns(o Owner, inode uint64) bool {
	var buf [64]byte
	n, err := unix.Readlink(fs.pidPath(o.PID, "fd", strconv.Itoa(o.FD)), buf[:])
	if err != nil {
		return false
	}
	ino, ok := parseSocketLink(buf[:n])
	return ok && ino == inode
}
