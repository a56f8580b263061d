package diagnose

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/procscan"
)

// update rewrites generated files (the causes topic).
var update = flag.Bool("update", false, "rewrite docs/topics/causes.md from the registry")

// TestRegistry checks what every cause declares, and that each is one file
// with its test.
func TestRegistry(t *testing.T) {
	if len(Causes()) != len(registry) || len(registry) < 7 {
		t.Fatalf("%d causes registered", len(registry))
	}
	for _, c := range Causes() {
		if c.ID == "" || c.Title == "" || len(c.Help) < 80 || c.fix == nil {
			t.Errorf("%q: id, title, help and fix are required (title %q, help %d chars)", c.ID, c.Title, len(c.Help))
		}
		if LookupCause(c.ID) != c || CauseTitle(c.ID) != c.Title {
			t.Errorf("%s: lookup", c.ID)
		}
		if c.socket != nil && c.evidence == nil {
			t.Errorf("%s: a socket cause needs evidence", c.ID)
		}
		if c.replaces != "" && (c.applies == nil || c.evidence == nil || LookupCause(c.replaces) == nil) {
			t.Errorf("%s: replaces %q without applies or evidence", c.ID, c.replaces)
		}
		file := "cause_" + strings.ReplaceAll(c.ID, "-", "_")
		for _, f := range []string{file + ".go", file + "_test.go"} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s: %v (one file per cause, with its test)", c.ID, err)
			}
		}
	}
	if got := socketCauses[numCauses-1]; got.ID != CauseAbandonedUnread {
		t.Errorf("the last socket cause takes the rest: %s", got.ID)
	}
}

// adviceQueries are every direction × runtime × library × thread state,
// with and without a server idle timeout estimate (several, around the
// libraries' limits).
func adviceQueries() []*adviceQuery {
	var libs [][]string
	libs = append(libs, nil)
	for _, r := range libraryRules {
		libs = append(libs, []string{r.lib})
	}
	var out []*adviceQuery
	p := &ProcessReport{PID: 4121, Process: &procscan.Process{PID: 4121, OpenFDs: 64, FDSoft: 64, FDHard: 4096, Cgroup: "/system.slice/app.service"}}
	for _, rt := range runtimes {
		for _, inbound := range []bool{true, false} {
			for _, l := range libs {
				for _, blocked := range []bool{false, true} {
					for _, idle := range []time.Duration{0, 300 * time.Millisecond, time.Second, 5 * time.Second, 12 * time.Second, 13 * time.Second, 37 * time.Second, 38 * time.Second, 10 * time.Minute} {
						q := &adviceQuery{runtime: rt, inbound: inbound, where: "to 10.0.3.7:5432", libraries: l, blocked: blocked, p: p,
							fill: filler{pid: "4121", user: "sudo -u svc ", ports: " (it listens on 8080)"}}
						if idle > 0 {
							q.serverIdle, q.evict = idle, evictBelow(idle)
						}
						out = append(out, q)
					}
				}
			}
		}
	}
	return out
}

// TestEveryCauseHasAdvice: every cause × runtime × direction (× library ×
// thread state) says what to do, with every placeholder filled.
func TestEveryCauseHasAdvice(t *testing.T) {
	for _, c := range Causes() {
		for _, q := range adviceQueries() {
			var lines []string
			if c.steps != nil {
				lines = c.steps(q)
			}
			lines = append(lines, c.fix(q)...)
			if len(lines) == 0 {
				t.Fatalf("%s: no advice for %s inbound=%v", c.ID, q.runtime, q.inbound)
			}
			for _, l := range lines {
				if strings.Contains(l, "{pid}") || strings.Contains(l, "{user}") || strings.Contains(l, "{ports}") || strings.Contains(l, "%!") {
					t.Fatalf("%s %s: unfilled %q", c.ID, q.runtime, l)
				}
			}
		}
	}
}

// TestAdviceSettingsWithinLimits: every library setting that advice names
// with a value is within the limits its documentation states.
func TestAdviceSettingsWithinLimits(t *testing.T) {
	type pattern struct {
		key string
		re  *regexp.Regexp
	}
	var pats []pattern
	for k, s := range Settings {
		if s.Doc == "" || s.Library == "" || s.Name == "" || !strings.Contains(s.Format, "%s") {
			t.Errorf("%s: library, name, format and doc are required", k)
		}
		re := strings.Replace(regexp.QuoteMeta(s.Format), "%s", `([0-9.]+(?: \* time\.(?:Second|Millisecond))?)`, 1)
		pats = append(pats, pattern{k, regexp.MustCompile(re)})
		// A hand-written value (name=N, name: N, name(N)) also counts.
		pats = append(pats, pattern{k, regexp.MustCompile(`\b` + regexp.QuoteMeta(s.Name) + `\s*[=:(]\s*([0-9.]+(?: \* time\.(?:Second|Millisecond))?)`)})
	}
	named := map[string]int{}
	for _, q := range adviceQueries() {
		for _, c := range Causes() {
			lines := c.fix(q)
			if c.steps != nil {
				lines = append(lines, c.steps(q)...)
			}
			for _, l := range lines {
				for _, p := range pats {
					for _, m := range p.re.FindAllStringSubmatch(l, -1) {
						s := Settings[p.key]
						d, err := parseSettingValue(m[1], s.Unit)
						if err != nil {
							t.Fatalf("%s in %q: %v", p.key, l, err)
						}
						named[p.key]++
						if d < s.Min || (s.Max > 0 && d > s.Max) || d <= 0 {
							t.Errorf("%s = %v is outside %s's limits [%v, %v] (server idle %v):\n%s", p.key, d, s.Library, s.Min, s.Max, q.serverIdle, l)
						}
					}
				}
			}
		}
	}
	for k := range Settings {
		if named[k] == 0 {
			t.Errorf("setting %s is never named by any advice: remove it or use it", k)
		}
	}
}

// parseSettingValue reads a value written in unit (0: a Go duration expression).
func parseSettingValue(v string, unit time.Duration) (time.Duration, error) {
	if n, u, ok := strings.Cut(v, " * time."); ok {
		x, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return 0, err
		}
		if u == "Second" {
			return time.Duration(x) * time.Second, nil
		}
		return time.Duration(x) * time.Millisecond, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	if unit == 0 {
		return 0, fmt.Errorf("a bare number %q for a Go duration", v)
	}
	return time.Duration(f * float64(unit)), nil
}

// TestSettingValueRefusesOutOfLimits: the one way advice writes a value.
func TestSettingValueRefusesOutOfLimits(t *testing.T) {
	s := Settings["hikaricp.idleTimeout"]
	if _, ok := s.Value(9 * time.Second); ok {
		t.Error("HikariCP idleTimeout 9 s accepted")
	}
	if v, ok := s.Value(12 * time.Second); !ok || v != "idleTimeout=12000" {
		t.Errorf("12 s: %q %v", v, ok)
	}
	line := setting("hikaricp.maxLifetime", 800*time.Millisecond, "raise the server's timeout")
	if !strings.Contains(line, "cannot go below 30s") || !strings.Contains(line, "raise the server's timeout") {
		t.Errorf("below the minimum: %q", line)
	}
}

// TestCausesTopicIsCurrent: docs/topics/causes.md is the registry's help
// (go test ./internal/diagnose -update rewrites it).
func TestCausesTopicIsCurrent(t *testing.T) {
	const path = "../../docs/topics/causes.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), "\n## ")
	if !ok {
		t.Fatalf("%s has no sections", path)
	}
	title, intro, _ := strings.Cut(head, "\n")
	want := title + "\n\n" + CausesMarkdown(intro)
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(b) != want {
		t.Errorf("%s is not the registry's help: run go test ./internal/diagnose -update", path)
	}
}

// TestDocsListEveryCause: the docs that list the cause ids list the
// registry's, in its order.
func TestDocsListEveryCause(t *testing.T) {
	for path, prefix := range map[string]string{
		"../../docs/topics/json.md": "- `cause` is one of ",
		"../../README.md":           "Cause ids are stable: ",
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, line, ok := strings.Cut(string(b), prefix)
		if !ok {
			t.Errorf("%s: no line starting %q", path, prefix)
			continue
		}
		line, _, _ = strings.Cut(line, "\n")
		last := -1
		for _, c := range Causes() {
			i := strings.Index(line, c.ID)
			if i < 0 || i < last {
				t.Errorf("%s: %q lacks %s or lists it out of order", path, prefix, c.ID)
			}
			last = i
		}
	}
}
