package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/docs"
	"github.com/closewait/closewait/internal/cli"
	"github.com/closewait/closewait/internal/cwtest"
)

var update = flag.Bool("update", false, "rewrite the example outputs and help topics in docs/field-guide.md")

const guidePath = "../../docs/field-guide.md"

var (
	reExample = regexp.MustCompile("(?s)<!-- example: ([a-z-]+) -->\n.*?<!-- /example -->")
	reTopic   = regexp.MustCompile("(?s)<!-- topic: ([a-z-]+) -->\n.*?<!-- /topic -->")
	reFence   = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
)

// shown is one captured example: the command as typed and its output.
type shown struct {
	args []string
	out  string
	pids []int // masked when comparing
	// loose: every number is masked (the counts of a growing leak depend
	// on timing); only the words are compared.
	loose bool
	// unordered: rows of equal rank may come in any order; compare them sorted.
	unordered bool
}

func (s shown) block() string {
	return "```text\n$ closewait " + strings.Join(s.args, " ") + "\n" + s.out + "```\n"
}

// captureExample runs closewait and keeps what it printed on stdout.
func captureExample(t *testing.T, pids []int, args ...string) shown {
	t.Helper()
	r := run(t, nil, args...)
	if r.code == ExitCouldNotRun {
		t.Fatalf("closewait %v: exit 3: %s", args, r.stderr)
	}
	return shown{args: args, out: r.stdout, pids: pids}
}

// ExitCouldNotRun mirrors cli.ExitError.
const ExitCouldNotRun = cli.ExitError

// exampleScenarios start the fixtures behind each example of the guide.
var exampleScenarios = map[string]func(t *testing.T) shown{
	"report": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{ReadEOF: 8, Unread: 3})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "--pid", strconv.Itoa(h.PID))
	},
	"sockets": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2, UnreadBytes: 512, NotAccepted: 1})
		time.Sleep(1100 * time.Millisecond)
		s := captureExample(t, []int{h.PID}, "sockets", "--pid", strconv.Itoa(h.PID))
		s.unordered = true
		return s
	},
	"missing-close": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{ReadEOF: 8})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID))
	},
	"abandoned-unread": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{Unread: 7, UnreadBytes: 100})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID))
	},
	"not-accepted": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{NotAccepted: 6})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID))
	},
	"normal-half-close": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID))
	},
	"pool-idle": func(t *testing.T) shown {
		// A server that closes each connection after 1 s idle, and a
		// holder with 6 pooled connections to it that it never reads.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		const conns = 6
		var mu sync.Mutex
		var held []*net.TCPConn
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		})
		go func() {
			for i := 0; i < conns; i++ {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := c.(*net.TCPConn)
				mu.Lock()
				held = append(held, tc)
				mu.Unlock()
				time.AfterFunc(time.Second, func() { tc.CloseWrite() }) // the server's idle timeout
			}
		}()
		h := cwtest.Start(t, cwtest.Spec{DialTo: ln.Addr().String(), Dial: conns})
		time.Sleep(1100 * time.Millisecond)
		return captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID))
	},
	"check": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{ReadEOF: 6, KeepAlive: true})
		time.Sleep(1100 * time.Millisecond)
		s := captureExample(t, []int{h.PID}, "check", "--pid", strconv.Itoa(h.PID))
		s.loose = true // host-wide settings and counts differ between hosts
		return s
	},
	"growing": func(t *testing.T) shown {
		h := cwtest.Start(t, cwtest.Spec{LeakEvery: 100 * time.Millisecond, LeakMax: 100})
		for i := 0; i < 10; i++ {
			h.Next("LEAK")
		}
		s := captureExample(t, []int{h.PID}, "explain", strconv.Itoa(h.PID), "--sample", "2s")
		s.loose = true
		return s
	},
}

// mask replaces what changes from run to run (pids, ports, times, ages,
// host, paths of the test binary, fd numbers) and collapses blanks.
func mask(s string, pids []int) []string {
	host, _ := os.Hostname()
	for _, p := range pids {
		s = regexp.MustCompile(`\b`+strconv.Itoa(p)+`\b`).ReplaceAllString(s, "PID")
	}
	// The user running the fixtures (root in CI, you elsewhere).
	names := []string{"root"}
	if u, err := user.Current(); err == nil {
		names = append(names, regexp.QuoteMeta(u.Username))
	}
	s = regexp.MustCompile(`\b(`+strings.Join(names, "|")+`)\b`).ReplaceAllString(s, "USER")
	s = regexp.MustCompile(`\(uid \d+\)`).ReplaceAllString(s, "(uid N)")
	if host != "" {
		s = regexp.MustCompile(`\b`+regexp.QuoteMeta(host)+`\b`).ReplaceAllString(s, "HOST")
	}
	// Lines about the whole host or the runtime's own threads change with
	// whatever else runs: keep only what they are.
	s = regexp.MustCompile(`(?m)^(\s*(TCP sockets|Threads:|threads:|FDs:)).*$`).ReplaceAllString(s, "$1 ...")
	s = regexp.MustCompile(`(?m)^\d+ CLOSE_WAIT in`).ReplaceAllString(s, "N CLOSE_WAIT in")
	s = regexp.MustCompile(`\(\d+ on the host\)`).ReplaceAllString(s, "(N on the host)")
	for _, r := range []struct{ re, with string }{
		{`\S*/closewait\.test\S*( -test\.\S+)*`, "TESTBINARY"},
		{`go1\.\d+(\.\d+)?`, "goVERSION"},
		{`\d{4}-\d\d-\d\d`, "DATE"},
		{`\d\d:\d\d:\d\d`, "TIME"},
		{`:\d{2,5}\b`, ":PORT"},
		{`port \d+`, "port PORT"},
		{`listens on \d+(, \d+)*`, "listens on PORT"},
		{`\b\d+(\.\d+)?(ns|µs|ms|s|m|h|d)(\d+(\.\d+)?(ms|s|m|h))*\b`, "AGE"},
		{`fd=\d+`, "fd=N"},
		{`pid=\d+`, "pid=PID"},
		{`\d+/\d+( \d+%)?`, "N/N"},
		{`\b\d+ threads?\b`, "N threads"},
		{`\b\d+ (running|sleeping|waiting|blocked)\b`, "N $1"},
		{`\d+(\.\d+)?/min`, "N/min"},
		{`socket:\[\d+\]`, "socket:[INODE]"},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.with)
	}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// topicSection is a help topic as the guide holds it: headings one level down.
func topicSection(name string) string {
	t, err := docs.Lookup(name)
	if err != nil {
		panic(err)
	}
	body := regexp.MustCompile(`(?m)^## `).ReplaceAllString(t.Body, "### ")
	return "## " + t.Title + "\n\n" + body + "\n"
}

// TestFieldGuide checks docs/field-guide.md: every help topic it quotes is
// the current text of that topic, every example output is what closewait
// prints today for the fixture behind it (pids, ports, times, ages and the
// host masked), and every closewait command line in it parses. With
// -update it rewrites the topics and examples from live fixtures.
func TestFieldGuide(t *testing.T) {
	raw, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	guide := string(raw)

	// Topics: the same text as closewait help TOPIC.
	seenTopics := map[string]bool{}
	fresh := reTopic.ReplaceAllStringFunc(guide, func(m string) string {
		name := reTopic.FindStringSubmatch(m)[1]
		seenTopics[name] = true
		if _, err := docs.Lookup(name); err != nil {
			t.Errorf("guide quotes topic %q: %v", name, err)
			return m
		}
		return "<!-- topic: " + name + " -->\n" + topicSection(name) + "<!-- /topic -->"
	})
	for _, n := range docs.Names() {
		if !seenTopics[n] {
			t.Errorf("the guide does not include help topic %q (add <!-- topic: %s --><!-- /topic -->)", n, n)
		}
	}
	if !*update && fresh != guide {
		t.Errorf("the guide's topic sections differ from docs/topics (run go test ./cmd/closewait -run TestFieldGuide -update):\n%s",
			cmp.Diff(strings.Split(guide, "\n"), strings.Split(fresh, "\n")))
	}

	// Examples: regenerate from fixtures.
	seenExamples := map[string]bool{}
	fresh = reExample.ReplaceAllStringFunc(fresh, func(m string) string {
		name := reExample.FindStringSubmatch(m)[1]
		seenExamples[name] = true
		sc, ok := exampleScenarios[name]
		if !ok {
			t.Errorf("example %q has no scenario in docs_test.go", name)
			return m
		}
		var got shown
		t.Run("example/"+name, func(t *testing.T) {
			got = sc(t)
			if *update {
				return
			}
			old := reFence.FindStringSubmatch(m)
			if old == nil {
				t.Fatalf("example %q has no code block", name)
			}
			// The guide's block was captured with other pids: those its
			// command line names.
			oldText := strings.TrimPrefix(old[1], "$ closewait ")
			oldCmd, _, _ := strings.Cut(oldText, "\n")
			want := mask(oldText, pidsIn(oldCmd))
			have := mask(strings.Join(got.args, " ")+"\n"+got.out, got.pids)
			if got.unordered {
				slices.Sort(want)
				slices.Sort(have)
			}
			if got.loose {
				want, have = maskNumbers(want), maskNumbers(have)
			}
			if diff := cmp.Diff(want, have); diff != "" {
				t.Errorf("example %q is out of date (-guide +closewait now); run with -update:\n%s", name, diff)
			}
		})
		if got.args == nil {
			return m
		}
		return "<!-- example: " + name + " -->\n" + got.block() + "<!-- /example -->"
	})
	for name := range exampleScenarios {
		if !seenExamples[name] {
			t.Errorf("scenario %q is not used in the guide", name)
		}
	}
	if *update {
		if err := os.WriteFile(guidePath, []byte(fresh), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Every closewait command line in the guide parses.
	for _, line := range commandLines(fresh) {
		args := shellWords(line)
		if err := cli.Parse(args); err != nil {
			t.Errorf("guide command %q does not parse: %v", line, err)
		}
	}
}

// maskNumbers replaces every number (and the ages made of them) with N.
func maskNumbers(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		l = regexp.MustCompile(`\b\d+(\.\d+)?(ms|s|m|h)\b`).ReplaceAllString(l, "N")
		out[i] = regexp.MustCompile(`\d+([.,]\d+)*`).ReplaceAllString(l, "N")
	}
	return out
}

// pidsIn returns the numbers in a command line: the pids it names
// (closewait explain PID, --pid PID).
func pidsIn(cmdline string) []int {
	var out []int
	for _, f := range regexp.MustCompile(`\b\d+\b`).FindAllString(cmdline, -1) {
		if n, err := strconv.Atoi(f); err == nil && n > 1 {
			out = append(out, n)
		}
	}
	return out
}

// commandLines finds the closewait command lines in the guide's code blocks
// and inline code: "closewait ...", "$ closewait ...", "sudo closewait ...".
func commandLines(md string) []string {
	var out []string
	add := func(l string) {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(l, "$ ")
		l = strings.TrimPrefix(l, "sudo ")
		if !strings.HasPrefix(l, "closewait ") && l != "closewait" {
			return
		}
		// Stop at shell syntax and comments: the rest is not closewait's.
		for _, sep := range []string{" | ", " > ", " && ", " ; ", "  #", " # ", " 2>", " <("} {
			if i := strings.Index(l, sep); i >= 0 {
				l = l[:i]
			}
		}
		out = append(out, strings.TrimSpace(l))
	}
	for _, m := range reFence.FindAllStringSubmatch(md, -1) {
		output := strings.HasPrefix(m[0], "```text")
		for _, l := range strings.Split(m[1], "\n") {
			if !output || strings.HasPrefix(l, "$ ") { // in outputs, only the command typed
				add(l)
			}
		}
	}
	for _, m := range regexp.MustCompile("`(closewait[^`]*)`").FindAllStringSubmatch(md, -1) {
		add(m[1])
	}
	return out
}

// placeholders stand for the values the guide leaves to the reader.
var placeholders = map[string]string{
	"PID": "1", "$PID": "1", "N": "1", "D": "5m", "S": "0.5", "FILE": "-", "TOPIC": "causes",
	"SHELL": "bash", "ADDR": "127.0.0.1", "PORT": "8080", "DURATION": "10s", "NAME": "web-03",
}

// shellWords splits a command line like sh would for simple quoting, drops
// the program name, and stands 1 in for $(...) and PID placeholders.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		if strings.Contains(w, "$(") {
			w = "1"
		}
		if v, ok := placeholders[w]; ok {
			w = v
		}
		words[i] = w
	}
	return words[1:]
}

func TestShellWordsAndCommandLines(t *testing.T) {
	md := "text `closewait explain PID --json` more\n```sh\n$ sudo closewait --pid \"$(pidof -s java)\" | jq .  # note\nls\n```\n"
	got := commandLines(md)
	want := []string{`closewait --pid "$(pidof -s java)"`, "closewait explain PID --json"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commandLines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"--pid", "1"}, shellWords(got[0])); diff != "" {
		t.Errorf("shellWords (-want +got):\n%s", diff)
	}
	// A bad flag in the guide would be caught.
	if err := cli.Parse(shellWords("closewait sockets --no-such-flag")); err == nil {
		t.Error("cli.Parse accepted an unknown flag")
	}
	if err := cli.Parse(shellWords("closewait --owners bogus")); err == nil {
		t.Error("cli.Parse accepted a bad enum value")
	}
}

// model is closewait's command line as kong sees it.
func model(t *testing.T) *kong.Application {
	t.Helper()
	var c cli.CLI
	p, err := kong.New(&c, kong.Name("closewait"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	return p.Model
}

// TestManPage renders closewait man with groff (no warnings) and man -l, and
// checks that every command, every flag and every help topic is in it.
func TestManPage(t *testing.T) {
	r := run(t, nil, "man")
	if r.code != 0 || !strings.HasPrefix(r.stdout, ".\\\"") || !strings.Contains(r.stdout, ".TH CLOSEWAIT 1") {
		t.Fatalf("closewait man: exit %d, %.200q, %s", r.code, r.stdout, r.stderr)
	}
	page := filepath.Join(t.TempDir(), "closewait.1")
	if err := os.WriteFile(page, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	var rendered string
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-mandoc", "-Tutf8", "-ww", "-k", page)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("groff: %v, warnings:\n%s", err, stderr.String())
		}
		rendered = regexp.MustCompile(`.\x08`).ReplaceAllString(string(out), "")
	}
	if _, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command("man", "-l", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=100") // stdout is a pipe: no pager, no overstrike
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("man -l: %v", err)
		}
		rendered = string(out)
	}
	if rendered == "" {
		t.Skip("needs man (apt-get install man-db) or groff to render the page")
	}
	for _, want := range []string{"CLOSEWAIT(1)", "NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL FLAGS", "COMMANDS", "EXIT STATUS", "PERMISSIONS", "SEE ALSO"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want)).MatchString(rendered) {
			t.Errorf("rendered page lacks the %s section", want)
		}
	}
	app := model(t)
	for _, n := range app.Children {
		if n.Hidden {
			continue
		}
		if !strings.Contains(rendered, "closewait "+n.Name) {
			t.Errorf("rendered page lacks command %s", n.Name)
		}
		for _, f := range n.Flags {
			if !f.Hidden && !strings.Contains(rendered, "--"+f.Name) {
				t.Errorf("rendered page lacks %s's flag --%s", n.Name, f.Name)
			}
		}
	}
	for _, tp := range docs.Topics() {
		var para string // the topic's first paragraph
		for _, l := range strings.Split(tp.Body, "\n") {
			if l != "" && !strings.ContainsAny(l[:1], "#|-") && !strings.HasPrefix(l, "```") {
				para = l
				break
			}
		}
		first := strings.Fields(docs.Text(para, 1000))[:5]
		if !strings.Contains(strings.Join(strings.Fields(rendered), " "), strings.Join(first, " ")) {
			t.Errorf("rendered page lacks topic %s (%q)", tp.Name, first)
		}
	}
}

// complete runs the bash completion function on a command line (the last
// word is the one being completed) and returns its candidates.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var q []string
	for _, w := range words {
		q = append(q, strconv.Quote(w))
	}
	sh := fmt.Sprintf(`source %q || exit 9
COMP_WORDS=(%s); COMP_CWORD=%d; _closewait; printf '%%s\n' "${COMPREPLY[@]}"`, script, strings.Join(q, " "), len(words)-1)
	out, err := exec.Command("bash", "-c", sh).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

// zptyScript types command lines followed by Tab into an interactive zsh
// whose fpath holds _closewait ($1) and waits for the completed words.
const zptyScript = `zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; zstyle ':completion:*' list-prompt ''; closewait() { :; }; print COMPINIT-DONE"
zpty -r z out '*COMPINIT-DONE*' || exit 3
check() {
  zpty -w -n z $'\C-u'"$1"$'\t\t'
  zpty -r z out "*$2*" || { print -r "no $2 after $1"; exit 1 }
  print -r "ok: $1 -> $2"
}
check 'closewait so' 'sockets'
check 'closewait --owners ' 'ebpf'
check 'closewait sockets --st' '--state'
check 'closewait help ca' 'causes'
check 'closewait completion ' 'fish'
zpty -d z
`

// TestCompletion loads the bash script and completes commands, flags, enum
// values, topics and pids; zsh and fish scripts are syntax-checked when
// those shells are installed.
func TestCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "closewait.bash")
	r := run(t, nil, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("completion bash: exit %d: %s", r.code, r.stderr)
	}
	os.WriteFile(script, []byte(r.stdout), 0o644)
	out, err := exec.Command("bash", "-c", "source "+script+" && complete -p closewait").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "complete -F _closewait closewait" {
		t.Fatalf("bash did not load the completion: %v: %s", err, out)
	}
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		words []string
		want  []string // each must be offered
		only  bool     // and nothing else
	}{
		{[]string{"closewait", "so"}, []string{"sockets"}, true},
		{[]string{"closewait", ""}, []string{"report", "sockets", "explain", "watch", "agent", "destroy", "analyze", "check", "help", "man", "completion"}, false},
		{[]string{"closewait", "--js"}, []string{"--json"}, true}, // the default command's flags work at the top
		{[]string{"closewait", "--owners", ""}, []string{"auto", "ebpf", "proc"}, true},
		{[]string{"closewait", "sockets", "--st"}, []string{"--state"}, true},
		{[]string{"closewait", "sockets", "--pid", self[:len(self)-1]}, []string{self}, false},
		{[]string{"closewait", "explain", self}, []string{self}, false},
		{[]string{"closewait", "help", "ca"}, []string{"causes"}, true},
		{[]string{"closewait", "help", "exp"}, []string{"explain"}, true},
		{[]string{"closewait", "completion", ""}, []string{"bash", "zsh", "fish"}, true},
		{[]string{"closewait", "watch", "--color", "n"}, []string{"never"}, true},
	}
	for _, tt := range tests {
		got := complete(t, script, tt.words...)
		for _, w := range tt.want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q offers %q, want %q among them", tt.words, got, w)
			}
		}
		if tt.only && len(got) != len(tt.want) {
			t.Errorf("completing %q offers %q, want only %q", tt.words, got, tt.want)
		}
	}

	for _, sh := range []struct{ shell, check string }{{"zsh", "-n"}, {"fish", "--no-execute"}} {
		r := run(t, nil, "completion", sh.shell)
		if r.code != 0 || !strings.Contains(r.stdout, "closewait") {
			t.Errorf("completion %s: exit %d: %s", sh.shell, r.code, r.stderr)
			continue
		}
		path, err := exec.LookPath(sh.shell)
		if err != nil {
			t.Logf("%s is not installed: its script is not syntax-checked", sh.shell)
			continue
		}
		f := filepath.Join(dir, "closewait."+sh.shell)
		os.WriteFile(f, []byte(r.stdout), 0o644)
		if out, err := exec.Command(path, sh.check, f).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", sh.shell, sh.check, err, out)
		}
		if sh.shell == "zsh" {
			// zsh completes only inside its line editor: type into an
			// interactive zsh on a pseudo-terminal (zpty) and read its echo.
			zdir := filepath.Join(dir, "zfunc")
			os.MkdirAll(zdir, 0o755)
			os.WriteFile(filepath.Join(zdir, "_closewait"), []byte(r.stdout), 0o644)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := exec.CommandContext(ctx, path, "-f", "-c", zptyScript, "zsh", zdir).CombinedOutput()
			cancel()
			if err != nil || strings.Count(string(out), "ok: ") != 5 {
				t.Errorf("zsh completion through zpty: %v\n%s", err, out)
			}
			continue
		}
		// fish completes a command line on request: drive it.
		for _, tt := range []struct{ line, want string }{
			{"closewait so", "sockets\tList sockets one per row (default: CLOSE_WAIT) with owners, queues and ages"},
			{"closewait --owners ", "ebpf"},
			{"closewait sockets --st", "--state"},
			{"closewait help ca", "causes"},
			{"closewait explain ", self},
		} {
			out, err := exec.Command(path, "-c", "source "+f+"; complete -C '"+tt.line+"'").CombinedOutput()
			if err != nil || !slices.ContainsFunc(strings.Split(string(out), "\n"), func(l string) bool { return l == tt.want || strings.HasPrefix(l, tt.want+"\t") }) {
				t.Errorf("fish completes %q with %q (%v), want %q", tt.line, out, err, tt.want)
			}
		}
	}
	if r := run(t, nil, "completion", "tcsh"); r.code != 3 || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("completion tcsh: exit %d, stderr %q; want exit 3 and one line", r.code, r.stderr)
	}
}

// TestHelpTopics: closewait help lists every topic and command; each topic
// prints; a command name prints that command's --help; anything else is one
// line and exit 3.
func TestHelpTopics(t *testing.T) {
	r := run(t, nil, "help")
	if r.code != 0 {
		t.Fatalf("help: exit %d: %s", r.code, r.stderr)
	}
	for _, tp := range docs.Topics() {
		if !strings.Contains(r.stdout, tp.Name) {
			t.Errorf("closewait help does not list %s", tp.Name)
		}
		r := run(t, nil, "help", tp.Name)
		if r.code != 0 || !strings.HasPrefix(r.stdout, strings.ToUpper(tp.Title)+"\n") {
			t.Errorf("help %s: exit %d, %.80q", tp.Name, r.code, r.stdout)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if n := len([]rune(l)); n > 80 && !strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "  ") {
				t.Errorf("help %s: line of %d columns: %q", tp.Name, n, l)
			}
		}
	}
	for _, n := range model(t).Children {
		if !n.Hidden && !strings.Contains(r.stdout, "  "+n.Name+" ") {
			t.Errorf("closewait help does not list command %s", n.Name)
		}
	}
	viaHelp, viaFlag := run(t, nil, "help", "sockets"), run(t, nil, "sockets", "--help")
	if viaHelp.code != 0 || viaHelp.stdout != viaFlag.stdout {
		t.Errorf("help sockets (exit %d) differs from sockets --help:\n%s\n---\n%s", viaHelp.code, viaHelp.stdout, viaFlag.stdout)
	}
	bad := run(t, nil, "help", "no-such-topic")
	if bad.code != 3 || strings.Count(bad.stderr, "\n") != 1 || !strings.Contains(bad.stderr, "causes") {
		t.Errorf("help no-such-topic: exit %d, stderr %q; want exit 3 and one line listing the topics", bad.code, bad.stderr)
	}
}

// otherTools' flags that the docs mention (docker, prlimit, node, py-spy).
var otherToolsFlags = map[string]bool{
	"report-on-signal": true, "report-directory": true, "locals": true, "network": true,
	"cap-add": true, "cap-drop": true, "perf-basic-prof": true, "interpreted-frames-native-stack": true, "logfile": true,
	"read-only": true, "build-arg": true, "nofile": true,
}

// TestDocsFlagsExist: every --flag the help topics and the guide mention is
// a flag of closewait (or of the other tool named in the same place).
func TestDocsFlagsExist(t *testing.T) {
	known := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			known[f.Name] = true
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(model(t).Node)
	files, _ := filepath.Glob("../../docs/topics/*.md")
	files = append(files, guidePath)
	reFlag := regexp.MustCompile("(?:^|[\\s(`'\"\\[])--([a-z][a-z0-9.-]*[a-z0-9])")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := reExample.ReplaceAllString(string(b), "") // closewait's own output
		for _, m := range reFlag.FindAllStringSubmatch(text, -1) {
			if !known[m[1]] && !otherToolsFlags[m[1]] {
				t.Errorf("%s mentions --%s, which no closewait command has", filepath.Base(f), m[1])
			}
		}
	}
	if len(known) < 20 {
		t.Fatalf("only %d flags in the model", len(known))
	}
}
