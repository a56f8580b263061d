// Package docs holds closewait's help topics. The same files are printed by
// `closewait help TOPIC`, written into the man page, and copied into
// docs/field-guide.md (a test keeps the guide's copies current), so the
// terminal, the man page and the guide never disagree.
package docs

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed topics/*.md
var topics embed.FS

// Topic is one help topic.
type Topic struct {
	Name  string // e.g. "causes": the file name without .md
	Title string // the text of its "# " heading
	Body  string // the markdown after the heading, trimmed
}

// Order is the order topics are listed and printed in (the man page, the guide).
var Order = []string{"close-wait", "causes", "reading", "runtimes", "trace", "keepalive", "thresholds", "permissions", "json", "exit-codes", "environment"}

// Topics returns every topic, in Order, then any others by name.
func Topics() []Topic {
	entries, err := fs.ReadDir(topics, "topics")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	rank := map[string]int{}
	for i, n := range Order {
		rank[n] = i + 1
	}
	var out []Topic
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".md")
		t, err := Lookup(name)
		if err == nil {
			out = append(out, t)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank[out[i].Name], rank[out[j].Name]
		if ri == 0 {
			ri = len(Order) + 1
		}
		if rj == 0 {
			rj = len(Order) + 1
		}
		if ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Lookup returns the topic called name.
func Lookup(name string) (Topic, error) {
	if name == "" || strings.ContainsAny(name, "/.") {
		return Topic{}, fmt.Errorf("no help topic %q", name)
	}
	b, err := topics.ReadFile("topics/" + name + ".md")
	if err != nil {
		return Topic{}, fmt.Errorf("no help topic %q", name)
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	t := Topic{Name: name}
	first, rest, _ := strings.Cut(text, "\n")
	t.Title = strings.TrimSpace(strings.TrimPrefix(first, "# "))
	t.Body = strings.TrimSpace(rest)
	return t, nil
}

// Names returns the topic names, in Order.
func Names() []string {
	var out []string
	for _, t := range Topics() {
		out = append(out, t.Name)
	}
	return out
}
