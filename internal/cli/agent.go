package cli

import "errors"

// AgentCmd is `closewait agent`. Not built yet: see issue 6.
type AgentCmd struct{}

// Run reports that the command is not built yet.
func (c *AgentCmd) Run(g *Globals) error {
	return errors.New("agent: not built yet (issue 6)")
}
