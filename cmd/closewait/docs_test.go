package main

import (
	"flag"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

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
	if host != "" {
		s = regexp.MustCompile(`\b`+regexp.QuoteMeta(host)+`\b`).ReplaceAllString(s, "HOST")
	}
	// Lines about the whole host or the runtime's own threads change with
	// whatever else runs: keep only what they are.
	s = regexp.MustCompile(`(?m)^(\s*(TCP sockets|Threads:|threads:|FDs:)).*$`).ReplaceAllString(s, "$1 ...")
	s = regexp.MustCompile(`(?m)^\d+ CLOSE_WAIT in`).ReplaceAllString(s, "N CLOSE_WAIT in")
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
	"SHELL": "bash", "ADDR": "127.0.0.1", "PORT": "8080", "DURATION": "10s",
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
