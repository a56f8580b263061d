package cli

import "errors"

// CheckCmd is `closewait check`. Not built yet: see issue 7.
type CheckCmd struct{}

// Run reports that the command is not built yet.
func (c *CheckCmd) Run(g *Globals) error {
	return errors.New("check: not built yet (issue 7)")
}
