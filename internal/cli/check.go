package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/closewait/closewait/internal/check"
	"github.com/closewait/closewait/internal/snapshot"
)

// CheckCmd is `closewait check`: the limits and sysctls that matter to
// CLOSE_WAIT on this host, and those that do not.
type CheckCmd struct {
	HostFlags
	SecretsFlag
	ThresholdFlags
	SysctlRoot string  `name:"path.sysctl" placeholder:"DIR" help:"Where /proc/sys is (default: --path.procfs/sys)."`
	JSON       bool    `short:"j" help:"Print JSON (version 1) instead of text."`
	PID        []int   `name:"pid" short:"p" sep:"," placeholder:"PID" help:"Only review these processes' limits (settings are host-wide)."`
	FileWarn   float64 `name:"file-warning" default:"0.8" help:"Warn when the host's allocated files (fs.file-nr) exceed this share of fs.file-max, 0..1."`
	FullScan   bool    `help:"Read every process's fd table (also finds sockets passed to unrelated processes; slower)."`
}

// Run reads the sysctls and the processes holding CLOSE_WAIT, judges them
// and prints the review. The exit code is the worst status: a process is
// judged exactly as the report judges it (the same threshold flags).
func (c *CheckCmd) Run(g *Globals) error {
	if c.FileWarn <= 0 || c.FileWarn > 1 {
		return fmt.Errorf("--file-warning must be a share above 0 and at most 1 (0.8 = 80%%), got %v", c.FileWarn)
	}
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	if err := g.checkPIDs(c.PID); err != nil {
		return err
	}
	pids := map[int]bool{}
	for _, p := range c.PID {
		pids[p] = true
	}
	root := c.SysctlRoot
	if root == "" {
		root = filepath.Join(g.ProcRoot, "sys")
	}
	sys, err := check.ReadSysctls(root)
	if err != nil {
		return fmt.Errorf("check: %w (set --path.sysctl)", err)
	}
	if len(sys.Missing) == 7 {
		return errors.New("check: none of the settings could be read under " + root + " (set --path.sysctl to the /proc/sys tree)")
	}
	snap, err := g.take(snapshot.Options{CompleteScan: c.FullScan})
	if err != nil {
		return err
	}
	holders, cw, ka := check.Holders(snap, pids)
	r := check.Review(sys, holders, cw, ka, check.Thresholds{Process: th, FileShare: c.FileWarn})
	meta := check.Meta{Host: snap.Host, Time: snap.Time, Notices: append(append([]string{}, snap.Notices...), sys.Missing...)}
	if c.JSON {
		err = check.WriteJSON(g.stdout, r, meta)
	} else {
		err = check.WriteText(g.stdout, r, meta)
	}
	if err != nil {
		return err
	}
	return exitCode(r.Status.ExitCode())
}
