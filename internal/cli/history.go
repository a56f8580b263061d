package cli

import (
	"fmt"
	"time"

	"github.com/closewait/closewait/internal/history"
)

// HistoryCmd is `closewait history`: the history store's upkeep.
type HistoryCmd struct {
	Check HistoryCheckCmd `cmd:"" help:"Check a history store without writing to it: its structure and every record. Exit 0 when it is sound, 3 when it is damaged or not a store. A damaged store is never written to: move it aside (mv PATH PATH.damaged) and the next run starts a new one."`
}

// HistoryCheckCmd is `closewait history check PATH`.
type HistoryCheckCmd struct {
	Path string `arg:"" optional:"" placeholder:"PATH" help:"The store (default: the default --history path)."`
}

// Run checks the store and prints what it holds.
func (c *HistoryCheckCmd) Run(g *Globals) error {
	path := c.Path
	if path == "" {
		path = history.DefaultPath()
	}
	in, err := history.CheckFile(path)
	if err != nil {
		return err
	}
	span := "no records"
	if in.Records > 0 {
		span = fmt.Sprintf("%d records from %s to %s", in.Records, in.Oldest.UTC().Format(time.RFC3339), in.Newest.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(g.stdout, "%s: sound, %d bytes, %s, %d sockets with a first-seen time\n", path, in.FileBytes, span, in.Sockets)
	return nil
}
