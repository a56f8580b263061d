package procscan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/closewait/closewait/internal/redact"
	"golang.org/x/sys/unix"
)

// Unlimited is the value of an fd limit set to "unlimited".
const Unlimited = math.MaxUint64

// Process holds the facts closewait reports about one process. Fields that
// could not be read are left zero and named in Missing.
type Process struct {
	PID       int
	PPID      int
	Comm      string
	Cmdline   string // arguments joined by spaces, secret-looking values redacted unless FS.ShowingSecrets
	Exe       string // target of /proc/PID/exe; empty without privilege
	UID       uint32 // real uid
	User      string // name of UID, or the number when it has none
	OpenFDs   int
	FDSoft    uint64 // RLIMIT_NOFILE soft limit; Unlimited for "unlimited"; 0 if unknown
	FDHard    uint64 // RLIMIT_NOFILE hard limit
	Threads   int
	StartTime time.Time
	Cgroup    string // cgroup v2 path, or the first v1 path
	Container Container
	Missing   []string // facts that could not be read (e.g. "exe: permission denied")
}

// FDUsage returns OpenFDs / FDSoft, or 0 when the limit is unknown or unlimited.
func (p *Process) FDUsage() float64 {
	if p.FDSoft == 0 || p.FDSoft == Unlimited {
		return 0
	}
	return float64(p.OpenFDs) / float64(p.FDSoft)
}

// ErrVanished reports a process that exited before its facts could be read.
var ErrVanished = errors.New("process vanished")

// Process reads the facts of one process. It returns ErrVanished (wrapped)
// when the process is gone; facts it may not read are listed in Missing.
func (fs FS) Process(pid int) (*Process, error) {
	pfs, err := fs.procfs()
	if err != nil {
		return nil, err
	}
	pp, err := pfs.Proc(pid)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, ErrVanished)
	}
	p := &Process{PID: pid}
	miss := func(what string, err error) {
		p.Missing = append(p.Missing, what+": "+errText(err))
	}
	st, err := pp.Stat()
	if err != nil {
		if isGone(err) {
			return nil, fmt.Errorf("process %d: %w", pid, ErrVanished)
		}
		miss("stat", err)
	} else {
		p.PPID = st.PPID
		p.Comm = st.Comm
		p.Threads = st.NumThreads
		if bt, err := fs.bootTime(pfs); err == nil {
			const userHZ = 100 // sysconf(_SC_CLK_TCK) on every Linux architecture Go supports
			p.StartTime = time.Unix(int64(bt), 0).Add(time.Duration(st.Starttime) * time.Second / userHZ)
		}
	}
	if c, err := pp.Comm(); err == nil {
		p.Comm = c
	}
	if args, err := pp.CmdLine(); err == nil {
		if fs.secrets {
			p.Cmdline = strings.Join(args, " ")
		} else {
			p.Cmdline = redact.Cmdline(args) // the one place command lines are read: nothing downstream sees the secrets
		}
	} else {
		miss("cmdline", err)
	}
	if exe, err := pp.Executable(); err == nil {
		p.Exe = exe
	} else if !isGone(err) {
		miss("exe", err)
	}
	if status, err := pp.NewStatus(); err == nil {
		p.UID = uint32(status.UIDs[0])
		p.User = UserName(p.UID)
	} else {
		miss("status", err)
	}
	if n, err := fs.fdCount(pid); err == nil {
		p.OpenFDs = n
	} else {
		miss("open fds", err)
	}
	if soft, hard, err := fs.fdLimits(pid); err == nil {
		p.FDSoft, p.FDHard = soft, hard
	} else {
		miss("fd limit", err)
	}
	if cgs, err := pp.Cgroups(); err == nil {
		p.Cgroup = cgroupPath(cgs)
		p.Container = ParseContainer(p.Cgroup)
	}
	return p, nil
}

var (
	procfsMu    sync.Mutex
	procfsCache = map[string]procfs.FS{}
	bootCache   = map[string]uint64{}
)

// bootTime returns the boot time from /proc/stat, read once per root.
func (fs FS) bootTime(pfs procfs.FS) (uint64, error) {
	procfsMu.Lock()
	defer procfsMu.Unlock()
	if bt, ok := bootCache[fs.root]; ok {
		return bt, nil
	}
	st, err := pfs.Stat()
	if err != nil {
		return 0, err
	}
	bootCache[fs.root] = st.BootTime
	return st.BootTime, nil
}

func (fs FS) procfs() (procfs.FS, error) {
	procfsMu.Lock()
	defer procfsMu.Unlock()
	if p, ok := procfsCache[fs.root]; ok {
		return p, nil
	}
	p, err := procfs.NewFS(fs.root)
	if err != nil {
		return procfs.FS{}, fmt.Errorf("procfs at %s: %w", fs.root, err)
	}
	procfsCache[fs.root] = p
	return p, nil
}

// fdCount returns the number of open fds: stat(/proc/PID/fd).st_size on
// Linux ≥ 6.2, else a directory listing.
func (fs FS) fdCount(pid int) (int, error) {
	path := fs.pidPath(pid, "fd")
	var st unix.Stat_t
	if err := unix.Stat(path, &st); fs.isProc && err == nil && st.Size > 0 {
		return int(st.Size), nil
	}
	d, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

// fdLimits reads the "Max open files" soft and hard limits from /proc/PID/limits.
func (fs FS) fdLimits(pid int) (soft, hard uint64, err error) {
	b, err := os.ReadFile(fs.pidPath(pid, "limits"))
	if err != nil {
		return 0, 0, err
	}
	return ParseFDLimits(b)
}

// ParseFDLimits extracts the "Max open files" soft and hard limits from the
// text of /proc/PID/limits. "unlimited" becomes Unlimited.
func ParseFDLimits(b []byte) (soft, hard uint64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return 0, 0, fmt.Errorf("limits: malformed line %q", line)
		}
		if soft, err = parseLimit(f[0]); err != nil {
			return 0, 0, fmt.Errorf("limits: %w", err)
		}
		if hard, err = parseLimit(f[1]); err != nil {
			return 0, 0, fmt.Errorf("limits: %w", err)
		}
		return soft, hard, nil
	}
	return 0, 0, errors.New(`limits: no "Max open files" line`)
}

func parseLimit(s string) (uint64, error) {
	if s == "unlimited" {
		return Unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad limit %q", s)
	}
	return v, nil
}

// stat is the part of /proc/PID/stat the scanner needs.
type stat struct {
	PPID int
}

// parseStat reads /proc/PID/stat; comm may hold spaces and parentheses, so
// fields are counted after the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("stat: no ')'")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return stat{}, errors.New("stat: too few fields")
	}
	ppid, ok := atoiBytes(f[1])
	if !ok {
		return stat{}, fmt.Errorf("stat: bad ppid %q", f[1])
	}
	return stat{PPID: ppid}, nil
}

func cgroupPath(cgs []procfs.Cgroup) string {
	for _, c := range cgs {
		if c.HierarchyID == 0 {
			return c.Path
		}
	}
	for _, c := range cgs {
		if c.Path != "" && c.Path != "/" {
			return c.Path
		}
	}
	return ""
}

var (
	userMu    sync.Mutex
	userCache = map[uint32]string{}
)

// UserName returns the login name of uid, or the number when it has none
// (looked up once per uid, then cached).
func UserName(uid uint32) string {
	userMu.Lock()
	defer userMu.Unlock()
	if n, ok := userCache[uid]; ok {
		return n
	}
	n := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(n); err == nil {
		n = u.Username
	}
	userCache[uid] = n
	return n
}

func isGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

func errText(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	case isGone(err):
		return "process exited"
	}
	return err.Error()
}
