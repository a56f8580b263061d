// Package cli implements closewait's commands. cmd/closewait only calls Main.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
	"github.com/closewait/closewait/internal/sockevents"
)

// Exit codes of every command.
const (
	ExitOK       = 0
	ExitWarning  = 1
	ExitCritical = 2
	ExitError    = 3 // could not run: bad flag, bad input, no access to the kernel
)

// Version is stamped at build time with -ldflags "-X github.com/closewait/closewait/internal/cli.Version=…".
var Version = "dev"

// CLI is the command line. Each command is a struct with a Run method.
type CLI struct {
	Globals

	Report  ReportCmd  `cmd:"" default:"withargs" help:"Report processes holding CLOSE_WAIT sockets, worst first (the default command). Exit 0 ok, 1 warning, 2 critical, 3 could not run."`
	Sockets SocketsCmd `cmd:"" help:"List sockets one per row (default: CLOSE_WAIT) with owners, queues and ages."`
	Explain ExplainCmd `cmd:"" help:"Explain one process's CLOSE_WAIT sockets: causes, evidence, what to run next."`
	Watch   WatchCmd   `cmd:"" help:"Watch CLOSE_WAIT live: growth per process, fd pressure, findings."`
	Agent   AgentCmd   `cmd:"" help:"Serve Prometheus metrics, a JSON API and a web dashboard (binds 127.0.0.1 by default)."`
	Trace   TraceCmd   `cmd:"" help:"Find the code that made the CLOSE_WAIT sockets: trace socket creation (eBPF) and report the creation stacks of those now in CLOSE_WAIT."`
	Destroy DestroyCmd `cmd:"" help:"Destroy chosen CLOSE_WAIT sockets in the kernel (dry run unless --yes)."`
	Analyze AnalyzeCmd `cmd:"" help:"Analyze saved ss, netstat or lsof output from another host."`
	Check   CheckCmd   `cmd:"" help:"Review the limits and sysctls that matter to CLOSE_WAIT on this host."`
	History HistoryCmd `cmd:"" help:"Check a history store (--history) without writing to it."`

	Help         HelpCmd         `cmd:"" help:"Explain a topic (CLOSE_WAIT, causes, reading the output, runtimes, keepalive, ...) or a command; alone, list the topics."`
	Man          ManCmd          `cmd:"" help:"Print the man page, closewait(1), generated from this command line (roff)."`
	Completion   CompletionCmd   `cmd:"" help:"Print a shell completion script: bash, zsh or fish."`
	CompletePIDs CompletePIDsCmd `cmd:"" name:"complete-pids" hidden:"" help:"Process ids for the shell completions: CLOSE_WAIT holders first, with their comm."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

// Globals are flags every command takes, and the settings of this run that
// the commands' flag groups hand over (HostFlags, SecretsFlag).
type Globals struct {
	Verbose bool `short:"v" help:"Say how the snapshot was taken (on stderr)."`

	// ProcRoot and Owners come from HostFlags, taken by the commands that
	// read this host (not analyze, help, man, completion).
	ProcRoot string `kong:"-"`
	Owners   string `kong:"-"`

	stdout, stderr io.Writer
	showSecrets    bool // set by SecretsFlag
	owners         ownerState
	feed           *sockevents.Feed // the change feed of watch and agent, once opened
}

// Env is what a command runs with: its output streams.
type Env struct {
	Stdout, Stderr io.Writer
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode lets a command end with a status without printing an error.
type exitCode int

func (e exitCode) Error() string { return "exit " + strconv.Itoa(int(e)) }

// Main runs closewait with args (without the program name) and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if path := os.Getenv("CLOSEWAIT_CPUPROFILE"); path != "" { // for developers: a CPU profile of one run
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	if path := os.Getenv("CLOSEWAIT_MEMPROFILE"); path != "" { // for developers: what one run allocated (pprof -sample_index=alloc_space)
		defer func() {
			if f, err := os.Create(path); err == nil {
				runtime.GC() // the profile counts what was allocated up to the last collection
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	var cli CLI
	cli.stdout, cli.stderr = stdout, stderr
	exited := -1
	parser, err := kong.New(&cli,
		kong.Name("closewait"),
		kong.Description("Find, explain and watch TCP sockets stuck in CLOSE_WAIT: the peer closed, the application never called close()."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exited = code }),
		kong.Vars{"version": "closewait " + Version},
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Bind(&cli.Globals),
	)
	if err != nil {
		fmt.Fprintf(stderr, "closewait: %v\n", err)
		return ExitError
	}
	ctx, err := parser.Parse(args)
	if exited >= 0 {
		return exited // --help or --version
	}
	if err != nil {
		fmt.Fprintf(stderr, "closewait: %v\n", err)
		return ExitError
	}
	err = ctx.Run(&cli.Globals)
	cli.Globals.closeOwners()
	cli.Globals.closeFeed()
	if err == nil {
		return ExitOK
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	fmt.Fprintf(stderr, "closewait: %v\n", oneLine(err))
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	return ExitError
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// ThresholdFlags are the thresholds every judging command takes.
type ThresholdFlags struct {
	CountWarning  int           `default:"100" help:"Warn when a process holds more CLOSE_WAIT sockets than this (0: off)."`
	CountCritical int           `default:"0" help:"Critical when a process holds more CLOSE_WAIT sockets than this (0: off)."`
	FDWarning     float64       `name:"fd-warning" default:"0" help:"Warn when a process with CLOSE_WAIT sockets uses more than this share of its fd limit, 0..1 (0: off)."`
	FDCritical    float64       `name:"fd-critical" default:"0.5" help:"Critical above this share of the fd limit, 0..1 (0: off)."`
	AgeWarning    time.Duration `default:"5m" help:"Warn when the oldest CLOSE_WAIT socket is older than this (0: off)."`
	AgeCritical   time.Duration `default:"30m" help:"Critical when the oldest CLOSE_WAIT socket is older than this (0: off)."`
}

// Thresholds converts the flags, checking their ranges.
func (f ThresholdFlags) Thresholds() (diagnose.Thresholds, error) {
	for name, v := range map[string]float64{"--fd-warning": f.FDWarning, "--fd-critical": f.FDCritical} {
		if v < 0 || v > 1 {
			return diagnose.Thresholds{}, fmt.Errorf("%s must be a share between 0 and 1 (0.5 = 50%%), got %v", name, v)
		}
	}
	for name, v := range map[string]int{"--count-warning": f.CountWarning, "--count-critical": f.CountCritical} {
		if v < 0 {
			return diagnose.Thresholds{}, fmt.Errorf("%s must not be negative, got %d", name, v)
		}
	}
	if f.AgeWarning < 0 || f.AgeCritical < 0 {
		return diagnose.Thresholds{}, errors.New("--age-warning and --age-critical must not be negative")
	}
	return diagnose.Thresholds{
		CountWarning: f.CountWarning, CountCritical: f.CountCritical,
		FDShareWarning: f.FDWarning, FDShareCritical: f.FDCritical,
		AgeWarning: f.AgeWarning, AgeCritical: f.AgeCritical,
	}, nil
}

// ScanFlags choose how the snapshot is taken.
type ScanFlags struct {
	FullScan bool `help:"Read every process's fd table, even after all owners are found (also finds sockets passed to unrelated processes; slower)."`
	ProcNet  bool `name:"proc-net" help:"Read /proc/net/tcp instead of netlink sock_diag (no ages)."`
}

// HostFlags are taken by the commands that read this host's /proc and
// sockets.
type HostFlags struct {
	ProcRoot string `name:"path.procfs" default:"/proc" placeholder:"DIR" help:"Where procfs is mounted."`
	Owners   string `default:"auto" enum:"auto,ebpf,proc" help:"How to find each socket's process: ebpf (in-kernel iterator; Linux ≥ 5.8 with BTF, CAP_BPF+CAP_PERFMON), proc (read /proc/PID/fd), auto (ebpf where permitted and worth it)."`
}

// AfterApply hands the flags to Globals.
func (f HostFlags) AfterApply(g *Globals) error {
	g.ProcRoot, g.Owners = f.ProcRoot, f.Owners
	return nil
}

// SecretsFlag is taken by the commands that show process command lines.
type SecretsFlag struct {
	ShowSecrets bool `help:"Show command lines as they are. By default secret-looking arguments (--password=…, mysql -p…, user:pass@ in URLs, token, secret and key flags, X_TOKEN=…) are shown as ***."`
}

// AfterApply hands the flag to Globals, which reads processes.
func (f SecretsFlag) AfterApply(g *Globals) error {
	g.showSecrets = f.ShowSecrets
	return nil
}

// procFS returns the procfs reader of this run.
func (g *Globals) procFS() procscan.FS {
	return procscan.NewFS(g.ProcRoot).ShowingSecrets(g.showSecrets)
}

// FilterFlags select sockets.
type FilterFlags struct {
	PID    []int         `name:"pid" short:"p" sep:"," placeholder:"PID" help:"Only sockets held by these processes (repeat or comma-separate)."`
	Port   []uint16      `name:"port" sep:"," placeholder:"PORT" help:"Only sockets whose local or remote port is one of these."`
	Remote []string      `name:"remote" sep:"," placeholder:"ADDR" help:"Only sockets whose peer is this address, address:port or CIDR prefix."`
	MinAge time.Duration `name:"min-age" placeholder:"DURATION" help:"Only sockets at least this old (estimate from tcp_info)."`
}

// NetNSFlag selects network namespaces of this host (sockets, destroy, watch).
type NetNSFlag struct {
	NetNS []string `name:"netns" sep:"," placeholder:"NS" help:"Only sockets in these network namespaces: an inode (as in net:[INODE]) or a name under /run/netns."`
}

// namespaces resolves the flag: nil when not given.
func (f NetNSFlag) namespaces() (map[uint64]bool, error) {
	if len(f.NetNS) == 0 {
		return nil, nil
	}
	out := map[uint64]bool{}
	for _, n := range f.NetNS {
		ino, err := netns.Resolve(n)
		if err != nil {
			return nil, fmt.Errorf("--netns: %w", err)
		}
		out[ino] = true
	}
	return out, nil
}

// Filter converts the flags.
func (f FilterFlags) Filter() (snapshot.Filter, error) {
	var out snapshot.Filter
	if f.MinAge < 0 {
		return out, errors.New("--min-age must not be negative")
	}
	out.MinAge = f.MinAge
	if len(f.PID) > 0 {
		out.PIDs = map[int]bool{}
		for _, p := range f.PID {
			if p <= 0 {
				return out, fmt.Errorf("--pid %d is not a process id", p)
			}
			out.PIDs[p] = true
		}
	}
	if len(f.Port) > 0 {
		out.Ports = map[uint16]bool{}
		for _, p := range f.Port {
			if p == 0 {
				return out, errors.New("--port 0 is not a port")
			}
			out.Ports[p] = true
		}
	}
	for _, r := range f.Remote {
		m, err := snapshot.ParseRemote(r)
		if err != nil {
			return out, fmt.Errorf("--remote: %w", err)
		}
		out.Remote = append(out.Remote, m)
	}
	return out, nil
}

// ParseStates reads a --state value: "all" or a comma-separated list of states.
func ParseStates(s string) (sockdiag.StateSet, error) {
	if strings.EqualFold(strings.TrimSpace(s), "all") {
		return sockdiag.AllStates, nil
	}
	var set sockdiag.StateSet
	for _, name := range strings.Split(s, ",") {
		st, err := sockdiag.ParseState(name)
		if err != nil {
			return 0, fmt.Errorf("--state: %w (try all, close-wait, established, listen, time-wait, ...)", err)
		}
		set |= sockdiag.NewStateSet(st)
	}
	return set, nil
}

// take takes a snapshot, printing notices and, with -v, how it went.
func (g *Globals) take(opt snapshot.Options) (*snapshot.Snapshot, error) {
	return g.takeAfter(opt, snapshot.Successive{})
}

// takeAfter is take for a snapshot after another (the samplers of watch
// and agent).
func (g *Globals) takeAfter(opt snapshot.Options, succ snapshot.Successive) (*snapshot.Snapshot, error) {
	opt.ProcRoot, opt.ShowSecrets = g.ProcRoot, g.showSecrets
	if !opt.NoOwners && opt.OwnerSource == nil {
		opt.OwnerSource = g.OwnerSource(false)
	}
	snap, err := snapshot.TakeAfter(opt, succ)
	if err != nil {
		return nil, &exitError{ExitError, fmt.Errorf("snapshot: %w", err)}
	}
	for _, n := range snap.Notices {
		fmt.Fprintf(g.stderr, "closewait: note: %s\n", n)
	}
	if fb := snap.Stats.Scan.Fallback; fb != nil && g.owners.lazy != nil {
		g.noteOwnersFallback(oneLine(fb))
	} else if g.owners.lazy != nil && g.Verbose && snap.Stats.Scan.Method == "ebpf" {
		fmt.Fprintln(g.stderr, "closewait: owners: eBPF task_file iterator")
	}
	if g.Verbose {
		st := snap.Stats
		fmt.Fprintf(g.stderr, "closewait: %d sockets listed from %s in %v; owners by %s in %v (%d processes: %d read, %d skipped, %d vanished, %d denied; %d fds read; %d owners reused)\n",
			len(snap.Sockets), st.Source, st.DumpTime.Round(time.Millisecond), st.Owners, st.ScanTime.Round(time.Millisecond),
			st.Scan.Processes, st.Scan.Visited, st.Scan.Skipped, st.Scan.Vanished, st.Scan.Denied, st.Scan.FDs, st.Reused)
	}
	return snap, nil
}

// terminalWidth returns the width of w when it is a terminal, else 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 0
	}
	return int(ws.Col)
}

// useColor decides colour for w: NO_COLOR, TERM=dumb and non-terminals get none.
func useColor(w io.Writer, mode string) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return terminalWidth(w) > 0
}
