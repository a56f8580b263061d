package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/closewait/closewait/internal/analyze"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/snapshot"
)

// AnalyzeCmd is `closewait analyze FILE|-`: the report, from saved ss,
// netstat or lsof output of another host.
type AnalyzeCmd struct {
	ThresholdFlags
	File string `arg:"" placeholder:"FILE|-" help:"Saved output of ss -tan[p][i], ss -s, netstat -ant[p] or lsof -nP -iTCP (format detected; gzip accepted); - reads stdin."`
	Host string `placeholder:"NAME" help:"Name of the host the output came from (default: unknown)."`
	JSON bool   `short:"j" help:"Print the JSON contract (version 1) instead of the text report."`
	FilterFlags
	Color string `default:"auto" enum:"auto,always,never" help:"Colour the status words: auto (terminal and no NO_COLOR), always, never."`
}

// Run parses the input, judges it like a live snapshot and prints the
// report; the exit code is the status (3 for unreadable input).
func (c *AnalyzeCmd) Run(g *Globals) error {
	th, err := c.Thresholds()
	if err != nil {
		return err
	}
	flt, err := c.Filter()
	if err != nil {
		return err
	}
	opt := diagnose.Options{PIDs: flt.PIDs}
	var in io.Reader
	aopt := analyze.Options{Host: c.Host}
	name := c.File
	if c.File == "-" {
		in, name = os.Stdin, "stdin"
		aopt.Time = time.Now()
	} else {
		f, err := os.Open(c.File)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		if st.IsDir() {
			return fmt.Errorf("analyze: %s is a directory, expected a file of saved ss, netstat or lsof output", c.File)
		}
		in, aopt.Time = f, st.ModTime()
	}
	res, err := analyze.Read(in, aopt)
	if err != nil {
		return fmt.Errorf("analyze %s: %w", name, err)
	}
	if len(flt.Ports) > 0 || len(flt.Remote) > 0 || flt.MinAge > 0 {
		if flt.MinAge > 0 && !res.HasAges() {
			return fmt.Errorf("analyze %s: --min-age needs ages, and %s output has none (save ss -tanpi)", name, res.Format)
		}
		flt.PIDs = nil // processes are chosen by the diagnosis, which also drops unattributed sockets
		kept := res.Snapshot.Select(flt)
		socks := make([]snapshot.Socket, len(kept))
		for i, s := range kept {
			socks[i] = *s
		}
		res.Snapshot.Sockets = socks
		res.Snapshot.Notices = append(res.Snapshot.Notices, fmt.Sprintf("%d CLOSE_WAIT sockets pass --port/--remote/--min-age; the state counts are of the whole input", len(socks)))
	}
	if opt.PIDs != nil && res.Snapshot.Stats.Owners == "none" {
		res.Snapshot.Notices = append(res.Snapshot.Notices, "--pid selects nothing: "+res.Format+" output names no processes")
	}
	r := res.Judge(th, opt)
	for _, n := range res.Snapshot.Notices {
		fmt.Fprintf(g.stderr, "closewait: note: %s\n", n)
	}
	err = g.writeReport(r, c.JSON, c.Color)
	if r.CloseWaitUnknown {
		var ec exitCode
		if !errors.As(err, &ec) { // writing failed
			return err
		}
		return &exitError{ExitError, fmt.Errorf("analyze %s: CLOSE_WAIT unknown: ss -s counts ESTABLISHED and CLOSE_WAIT together as \"estab\"; save ss -tanpi instead", name)}
	}
	return err
}
