package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/closewait/closewait/docs"
)

// HelpCmd is `closewait help [TOPIC|COMMAND]`.
type HelpCmd struct {
	Topic string `arg:"" optional:"" placeholder:"TOPIC" help:"A topic (closewait help lists them: close-wait, causes, reading, runtimes, ...) or a command name."`
}

// Help is shown by closewait help --help.
func (c *HelpCmd) Help() string {
	return `Examples:
  closewait help                 list the topics
  closewait help causes          what each finding means and what to do
  closewait help sockets         the same as closewait sockets --help

The topics are also sections of the man page (closewait man) and of docs/field-guide.md.`
}

// Run prints a topic, a command's help, or the list of topics.
func (c *HelpCmd) Run(g *Globals, ctx *kong.Context) error {
	width := terminalWidth(g.stdout)
	if width == 0 || width > 100 {
		width = 80
	}
	name := strings.ToLower(strings.TrimSpace(c.Topic))
	if name == "" {
		fmt.Fprintln(g.stdout, "Help topics (closewait help TOPIC):")
		fmt.Fprintln(g.stdout)
		for _, t := range docs.Topics() {
			fmt.Fprint(g.stdout, docs.Wrap(t.Title, width, fmt.Sprintf("  %-12s ", t.Name), strings.Repeat(" ", 15)))
		}
		fmt.Fprintln(g.stdout)
		fmt.Fprintln(g.stdout, "Commands (closewait help COMMAND, or closewait COMMAND --help):")
		fmt.Fprintln(g.stdout)
		for _, n := range ctx.Model.Children {
			if !n.Hidden {
				fmt.Fprint(g.stdout, docs.Wrap(firstSentence(n.Help), width, fmt.Sprintf("  %-12s ", n.Name), strings.Repeat(" ", 15)))
			}
		}
		fmt.Fprintln(g.stdout)
		fmt.Fprint(g.stdout, docs.Wrap("The same topics, with real example output for every cause: the field guide, /usr/share/doc/closewait/field-guide.md (docs/field-guide.md in the source), and man closewait.", width, "", ""))
		return nil
	}
	if t, err := docs.Lookup(name); err == nil {
		fmt.Fprintln(g.stdout, strings.ToUpper(t.Title))
		fmt.Fprintln(g.stdout)
		fmt.Fprint(g.stdout, docs.Text(t.Body, width))
		return nil
	}
	for _, n := range ctx.Model.Children {
		if n.Name == name && !n.Hidden {
			sub, err := kong.Trace(ctx.Kong, []string{n.Name})
			if err != nil {
				return fmt.Errorf("help %s: %w", name, err)
			}
			return sub.PrintUsage(false)
		}
	}
	return fmt.Errorf("help: no topic or command %q (topics: %s)", c.Topic, strings.Join(docs.Names(), ", "))
}

// firstSentence cuts a help text after its first sentence.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}

// Parse checks that args (without the program name) form a valid closewait
// command line, without running it: unknown commands or flags, bad enum
// values, missing arguments are errors. The docs test uses it to check every
// command shown in the field guide.
func Parse(args []string) error {
	var c CLI
	exited := false
	parser, err := kong.New(&c, kong.Name("closewait"), kong.Exit(func(int) { exited = true }),
		kong.Writers(io.Discard, io.Discard), kong.Vars{"version": "closewait " + Version}, kong.Bind(&c.Globals))
	if err != nil {
		return err
	}
	_, err = parser.Parse(args)
	if exited && err == nil {
		return nil
	}
	return err
}
