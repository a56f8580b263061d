package cli

import (
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
)

// ReportCmd is `closewait` / `closewait report`.
type ReportCmd struct {
	HostFlags
	ThresholdFlags
	ScanFlags
	SecretsFlag
	ProgramFlags
	JSON   bool          `short:"j" help:"Print the JSON contract (version 1) instead of the text report."`
	PID    []int         `name:"pid" short:"p" sep:"," placeholder:"PID" help:"Only these processes (their status alone sets the exit code)."`
	Color  string        `default:"auto" enum:"auto,always,never" help:"Colour the status words: auto (terminal and no NO_COLOR), always, never."`
	Sample time.Duration `placeholder:"DURATION" help:"Take two snapshots this far apart (e.g. 10s) and report sockets entering and leaving CLOSE_WAIT per minute, growth and the time until the fd limit."`

	// History (issue 5): --history[=PATH] compares with the last recorded run and records this one.
	History HistoryFlag `placeholder:"PATH" help:"Show growth since the last run recorded in the history store, and record this run (--history: default path; --history=PATH another)."`
}

// Run takes a snapshot, judges it and prints the report; the exit code is the status.
func (c *ReportCmd) Run(g *Globals) error {
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	if err := c.ProgramFlags.check(); err != nil {
		return err
	}
	if err := g.checkPIDs(c.PID); err != nil {
		return err
	}
	var opt diagnose.Options
	if len(c.PID) > 0 {
		opt.PIDs = map[int]bool{}
		for _, p := range c.PID {
			opt.PIDs[p] = true
		}
	}
	prev, snap, err := g.sample(snapshot.Options{CompleteScan: c.FullScan, ForceProcNet: c.ProcNet}, c.Sample)
	if err != nil {
		return err
	}
	fs := g.procFS()
	opt.FS, opt.Previous = &fs, prev
	opt.PIDs = c.ProgramFlags.pids(snap, fs, opt.PIDs)
	r := diagnose.Analyze(snap, th, opt)
	if c.History.Set {
		d, err := c.History.recordHistory(r)
		if err != nil {
			return err
		}
		if err := writeReportWithHistory(g, r, d, c.JSON, report.TextOptions{Width: terminalWidth(g.stdout), Color: useColor(g.stdout, c.Color)}); err != nil {
			return err
		}
		return exitCode(r.Status.ExitCode())
	}
	return g.writeReport(r, c.JSON, c.Color)
}

// writeReport prints a report as JSON or text and ends with its status as
// the exit code: the last step of every command that judges (report, analyze).
func (g *Globals) writeReport(r *diagnose.Report, asJSON bool, color string) error {
	var err error
	if asJSON {
		err = report.WriteJSON(g.stdout, r)
	} else {
		err = report.WriteText(g.stdout, r, report.TextOptions{Width: terminalWidth(g.stdout), Color: useColor(g.stdout, color)})
	}
	if err != nil {
		return err
	}
	return exitCode(r.Status.ExitCode())
}
