package cli

import "errors"

// DestroyCmd is `closewait destroy`. Not built yet: see issue 7.
type DestroyCmd struct{}

// Run reports that the command is not built yet.
func (c *DestroyCmd) Run(g *Globals) error {
	return errors.New("destroy: not built yet (issue 7)")
}
