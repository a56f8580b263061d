package cli

import (
	"bytes"
	"strings"
	"testing"
)

// run calls Main in-process and returns its exit code and output.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestMainRejectsBadInput: every bad flag, value or combination is refused
// before anything is read from the kernel, with exit 3 and one line on
// stderr naming the problem, and nothing on stdout.
func TestMainRejectsBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error line
	}{
		{[]string{"--no-such-flag"}, "--no-such-flag"},
		{[]string{"no-such-command"}, "no-such-command"},
		{[]string{"--color", "purple"}, "--color"},
		{[]string{"--owners", "magic"}, "--owners"},
		{[]string{"--fd-critical", "2"}, "--fd-critical"},
		{[]string{"--fd-warning", "-0.1"}, "--fd-warning"},
		{[]string{"--count-warning", "-1"}, "--count-warning"},
		{[]string{"--age-warning", "-1s"}, "--age-warning"},
		{[]string{"--age-warning", "soon"}, "--age-warning"},
		{[]string{"--pid", "0"}, "--pid 0"},
		{[]string{"--pid", "abc"}, "--pid"},
		{[]string{"--runtime", "cobol"}, "--runtime"},
		{[]string{"--comm", "[x"}, "--comm"},
		{[]string{"sockets", "--json", "--csv"}, "--json"},
		{[]string{"sockets", "--state", "sleepy"}, "--state"},
		{[]string{"sockets", "--port", "0"}, "--port 0"},
		{[]string{"sockets", "--remote", "not-an-address"}, "--remote"},
		{[]string{"sockets", "--min-age", "-1m"}, "--min-age"},
		{[]string{"sockets", "--no-owners", "--pid", "1"}, "--no-owners"},
		{[]string{"sockets", "--no-owners", "--comm", "java"}, "--no-owners"},
		{[]string{"explain", "-5"}, "-5"},
		{[]string{"explain", "1", "2"}, "2"},
		{[]string{"watch", "--interval", "10ms"}, "--interval"},
		{[]string{"watch", "--json", "--plain"}, "--json and --plain"},
		{[]string{"watch", "--history", "store"}, "--history=store"},
		{[]string{"agent", "--interval", "100ms"}, "--interval"},
		{[]string{"agent", "--top", "0"}, "--top"},
		{[]string{"agent", "--listen", "nohost"}, "--listen"},
		{[]string{"agent", "--retention", "1s"}, "--retention"},
		{[]string{"destroy", "--yes"}, "needs a filter"},
		{[]string{"check", "--file-warning", "0"}, "--file-warning"},
		{[]string{"analyze"}, "<file>"},
		{[]string{"completion", "tcsh"}, "tcsh"},
		{[]string{"help", "no-such-topic"}, "no-such-topic"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(tt.args...)
			if code != ExitError {
				t.Errorf("exit %d, want %d", code, ExitError)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "closewait: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want a closewait: line naming %q", stderr, tt.want)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); !strings.Contains(first, tt.want) {
				t.Errorf("the first line %q does not name %q", first, tt.want)
			}
		})
	}
}

// TestMainHelpAndVersion: --help, --version, help, man and completion
// print to stdout and exit 0 without reading the kernel.
func TestMainHelpAndVersion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--version"}, []string{"closewait " + Version}},
		{[]string{"--help"}, []string{"Usage: closewait", "sockets", "explain", "watch", "agent", "destroy", "analyze", "check"}},
		{[]string{"sockets", "--help"}, []string{"Usage: closewait sockets", "--state", "--comm", "--runtime"}},
		{[]string{"agent", "--help"}, []string{"--web.config.file", "--show-secrets", "--listen"}},
		{[]string{"help"}, []string{"close-wait"}},
		{[]string{"help", "exit-codes"}, []string{"EXIT CODES"}},
		{[]string{"man"}, []string{".TH"}},
		{[]string{"completion", "bash"}, []string{"complete"}},
		{[]string{"completion", "zsh"}, []string{"compdef"}},
		{[]string{"completion", "fish"}, []string{"complete -c closewait"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(tt.args...)
			if code != ExitOK || stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%.600s", w, stdout)
				}
			}
		})
	}
}

// TestParse: Parse accepts what Main would run and refuses what it would
// reject, without running anything.
func TestParse(t *testing.T) {
	for _, args := range [][]string{
		nil, {"--json"}, {"--pid", "1,2"}, {"sockets", "--state", "all", "--ndjson"},
		{"explain", "1", "--sample", "10s"}, {"watch", "--count", "3"}, {"watch", "-n", "3", "-d", "1s", "-p", "1", "-j"}, {"agent", "--listen", "[::]:10717"},
		{"destroy", "--pid", "1", "--yes"}, {"--history=/tmp/h.db"}, {"--comm", "java", "--runtime", "java"},
	} {
		if err := Parse(args); err != nil {
			t.Errorf("Parse(%q): %v", args, err)
		}
	}
	for _, args := range [][]string{{"--nope"}, {"sockets", "extra"}, {"explain", "1", "2"}, {"--color", "x"}} {
		if err := Parse(args); err == nil {
			t.Errorf("Parse(%q) accepted it", args)
		}
	}
}

// TestHelpShowsFlagsWhereTheyApply: a command offers only the flags it
// uses (issue 16 item 12): analyze reads a file, so no --owners, --netns
// or --path.procfs; help, man and completion take none of them; the
// commands that read this host do.
func TestHelpShowsFlagsWhereTheyApply(t *testing.T) {
	hostFlags := []string{"--owners", "--path.procfs", "--netns"}
	tests := []struct {
		args     []string
		has, not []string
	}{
		{[]string{"analyze", "--help"}, nil, hostFlags},
		{[]string{"help", "--help"}, nil, hostFlags},
		{[]string{"man", "--help"}, nil, hostFlags},
		{[]string{"completion", "--help"}, nil, hostFlags},
		{[]string{"sockets", "--help"}, hostFlags, nil},
		{[]string{"explain", "--help"}, []string{"--owners", "--path.procfs"}, []string{"--netns"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, _ := run(tt.args...)
			if code != ExitOK {
				t.Fatalf("exit %d", code)
			}
			for _, f := range tt.not {
				if strings.Contains(stdout, f) {
					t.Errorf("offers %s:\n%s", f, stdout)
				}
			}
			for _, f := range tt.has {
				if !strings.Contains(stdout, f) {
					t.Errorf("lacks %s:\n%s", f, stdout)
				}
			}
		})
	}
}
