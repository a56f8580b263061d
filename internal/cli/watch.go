package cli

import "errors"

// WatchCmd is `closewait watch`. Not built yet: see issue 5.
type WatchCmd struct{}

// Run reports that the command is not built yet.
func (c *WatchCmd) Run(g *Globals) error {
	return errors.New("watch: not built yet (issue 5)")
}
