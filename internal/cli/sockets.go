package cli

import (
	"errors"

	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
)

// SocketsCmd is `closewait sockets`.
type SocketsCmd struct {
	HostFlags
	FilterFlags
	NetNSFlag
	ProgramFlags
	ScanFlags
	State     string `default:"close-wait" help:"States to list: all, or a comma-separated list (close-wait, established, listen, time-wait, ...)."`
	JSON      bool   `short:"j" help:"Print one JSON array."`
	NDJSON    bool   `name:"ndjson" help:"Print one JSON object per line (large hosts)."`
	CSV       bool   `name:"csv" help:"Print CSV with a header row."`
	NoHeaders bool   `help:"Leave out the table's header and footnote."`
	NoOwners  bool   `help:"Do not look for owning processes (fastest)."`
}

// Run lists the selected sockets.
func (c *SocketsCmd) Run(g *Globals) error {
	n := 0
	for _, b := range []bool{c.JSON, c.NDJSON, c.CSV} {
		if b {
			n++
		}
	}
	if n > 1 {
		return errors.New("choose one of --json, --ndjson, --csv")
	}
	states, err := ParseStates(c.State)
	if err != nil {
		return err
	}
	f, err := c.Filter()
	if err != nil {
		return err
	}
	if f.NetNS, err = c.namespaces(); err != nil {
		return err
	}
	if c.NoOwners && (len(f.PIDs) > 0 || c.ProgramFlags.set()) {
		return errors.New("--pid, --comm and --runtime need owners: drop --no-owners")
	}
	if err := c.ProgramFlags.check(); err != nil {
		return err
	}
	if err := g.checkPIDs(c.PID); err != nil {
		return err
	}
	// Read only the chosen namespaces: entering and dumping the others
	// would cost their sockets for nothing.
	snap, err := g.take(snapshot.Options{States: states, NoOwners: c.NoOwners, CompleteScan: c.FullScan, ForceProcNet: c.ProcNet, NetNS: f.NetNS, ListedOnly: true})
	if err != nil {
		return err
	}
	f.PIDs = c.ProgramFlags.pids(snap, g.procFS(), f.PIDs)
	socks := snap.Select(f)
	sw := report.NewSocketWriter(g.stdout, snap)
	switch {
	case c.JSON:
		return sw.JSON(socks)
	case c.NDJSON:
		return sw.NDJSON(socks)
	case c.CSV:
		return sw.CSV(socks)
	}
	return sw.Table(socks, !c.NoHeaders)
}
