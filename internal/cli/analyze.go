package cli

import "errors"

// AnalyzeCmd is `closewait analyze`. Not built yet: see issue 7.
type AnalyzeCmd struct{}

// Run reports that the command is not built yet.
func (c *AnalyzeCmd) Run(g *Globals) error {
	return errors.New("analyze: not built yet (issue 7)")
}
