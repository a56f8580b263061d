package manpage

import (
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

type tinyCmd struct {
	Target string        `arg:"" help:"What to look at."`
	Mode   string        `default:"fast" enum:"fast,slow" help:"How."`
	Wait   time.Duration `default:"5s" help:"How long."`
	Count  int           `help:"How many."`
	Quiet  bool          `short:"q" help:"Say less."`
	Secret bool          `hidden:"" help:"Not shown."`
}

func (tinyCmd) Help() string { return "Examples:\n  tiny look here\n\n.A line that starts with a dot." }

type tiny struct {
	Root string   `name:"path.root" placeholder:"DIR" default:"/" help:"Root."`
	Look tinyCmd  `cmd:"" help:"Look at something. More words."`
	Gone struct{} `cmd:"" hidden:"" help:"Hidden command."`
}

func TestWrite(t *testing.T) {
	var c tiny
	p, err := kong.New(&c, kong.Name("tiny"), kong.Description("Find tiny things: all of them."))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Write(&b, p.Model, Options{Version: "tiny 1.0", Date: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		`.TH TINY 1 "2026-11-25" "tiny 1.0" "User Commands"`,
		".SH NAME\ntiny \\- Find tiny things\n",
		".B tiny look\n\\fITARGET\\fR [\\fIflags\\fR]\n",
		".TP\n\\fB\\-\\-path.root\\fR=\\fIDIR\\fR\nRoot. (default: /)\n",
		".TP\n\\fB\\-\\-mode\\fR=\\fIfast|slow\\fR\nHow. (one of: fast, slow; default: fast)\n",
		".TP\n\\fB\\-\\-wait\\fR=\\fIDURATION\\fR\nHow long. (default: 5s)\n",
		".TP\n\\fB\\-\\-count\\fR=\\fIN\\fR\nHow many.\n",
		".TP\n\\fB\\-q\\fR, \\fB\\-\\-quiet\\fR\nSay less.\n",
		".nf\nExamples:\n  tiny look here\n.fi\n",
		"\\&.A line that starts with a dot.",
		".SH \"EXIT STATUS\"",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, hidden := range []string{"secret", "tiny gone", "Hidden command"} {
		if strings.Contains(page, hidden) {
			i := strings.Index(page, hidden)
			t.Logf("context: %q", page[max(0, i-80):i+20])
			t.Errorf("page shows hidden %q", hidden)
		}
	}
}
