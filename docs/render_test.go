package docs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestText(t *testing.T) {
	md := "A **bold** and `code` and *stress* line that is long enough to wrap at forty columns.\n\n" +
		"## Sub heading\n\n- one item\n- two\n\n```\n  keep   this\n```\n"
	want := `A bold and code and stress line that is
long enough to wrap at forty columns.

SUB HEADING

  - one item
  - two

      keep   this
`
	if diff := cmp.Diff(want, Text(md, 40)); diff != "" {
		t.Errorf("Text (-want +got):\n%s", diff)
	}
	table := "| flag | default | meaning |\n|---|---|---|\n| `--x N` | 1 | what x does, at some length, and more |\n"
	want = `  FLAG   DEFAULT  MEANING
  --x N  1        what x does, at some length, and
                  more
`
	if diff := cmp.Diff(want, Text(table, 50)); diff != "" {
		t.Errorf("Text of a table (-want +got):\n%s", diff)
	}
}

func TestRoff(t *testing.T) {
	for _, tt := range []struct{ name, md, want string }{
		{"escapes", `a \ b -x ≥ c`, ".PP\na \\e b \\-x \\[u2265] c\n"},
		{"inline", "run `ss -tn` **now** or *later*", ".PP\nrun \\fBss \\-tn\\fR \\fBnow\\fR or \\fIlater\\fR\n"},
		{"control character", "```\n.hidden\n'quoted\n```", ".PP\n.RS 2\n.nf\n\\&.hidden\n\\&'quoted\n.fi\n.RE\n"},
		{"table", "| code | meaning |\n|---|---|\n| 3 | could not run |", ".TP\n\\fB3\\fR\ncould not run\n"},
		{"bullet", "- item", ".IP \\(bu 2\nitem\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Roff(tt.md)); diff != "" {
				t.Errorf("Roff (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTopics(t *testing.T) {
	got := Names()
	if diff := cmp.Diff(Order, got); diff != "" {
		t.Errorf("topics on disk differ from Order (-want +got):\n%s", diff)
	}
	for _, tp := range Topics() {
		if tp.Title == "" || tp.Body == "" || strings.HasPrefix(tp.Body, "# ") {
			t.Errorf("topic %s: title %q, body %.40q", tp.Name, tp.Title, tp.Body)
		}
	}
	for _, bad := range []string{"", "../docs", "nope", "topics/causes"} {
		if _, err := Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) found a topic", bad)
		}
	}
}
