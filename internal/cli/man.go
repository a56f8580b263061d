package cli

import (
	"github.com/alecthomas/kong"

	"github.com/closewait/closewait/internal/manpage"
)

// ManCmd is `closewait man`: it prints the man page generated from the command line's definition.
type ManCmd struct{}

// Help is shown by closewait man --help.
func (c *ManCmd) Help() string {
	return `Examples:
  closewait man > closewait.1 && man -l closewait.1
  closewait man | gzip -9 > /usr/share/man/man1/closewait.1.gz`
}

// Run writes the page to stdout.
func (c *ManCmd) Run(g *Globals, ctx *kong.Context) error {
	return manpage.Write(g.stdout, ctx.Model, manpage.Options{Version: "closewait " + Version})
}
