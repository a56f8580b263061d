package cli

import "errors"

// ExplainCmd is `closewait explain`. Not built yet: see issue 4.
type ExplainCmd struct{}

// Run reports that the command is not built yet.
func (c *ExplainCmd) Run(g *Globals) error {
	return errors.New("explain: not built yet (issue 4)")
}
