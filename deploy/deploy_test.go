// Package deploy holds the files that run closewait agent in a fleet
// (Prometheus rules, Grafana dashboard, Kubernetes DaemonSet, systemd unit);
// its tests check them against the metrics the agent exports.
package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/closewait/closewait/internal/agent"
)

func exported(name string) bool { return slices.Contains(agent.MetricNames, name) }

var (
	metricRE = regexp.MustCompile(`\bclosewait_[a-z_]+\b`)
	// What PromQL leaves after label matchers, ranges and strings are removed.
	promqlWords = map[string]bool{"sum": true, "max": true, "min": true, "avg": true, "count": true, "topk": true,
		"bottomk": true, "deriv": true, "rate": true, "increase": true, "by": true, "without": true, "and": true,
		"or": true, "unless": true, "on": true, "ignoring": true, "time": true, "label_values": true}
	stripRE = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\$\w+|\b\d+(\.\d+)?\b|\bby\s*\([^)]*\)|,\s*[a-z_]+\s*\)\s*$`) // the last: label_values' label argument
	identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
)

// checkExpr fails when expr refers to a metric the agent does not export, or to none.
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	names := metricRE.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q uses no closewait metric", where, expr)
	}
	for _, n := range names {
		if !exported(n) {
			t.Errorf("%s: %q uses %s, which the agent does not export", where, expr, n)
		}
	}
	for _, id := range identRE.FindAllString(stripRE.ReplaceAllString(expr, " "), -1) {
		if !strings.HasPrefix(id, "closewait_") && !promqlWords[id] {
			t.Errorf("%s: %q refers to %q, neither a closewait metric nor a known PromQL word", where, expr, id)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus: apt-get install prometheus)")
	}
	return p
}

// TestPrometheusRules runs promtool's syntax check and the rules' unit tests.
func TestPrometheusRules(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "closewait-rules.yml"},
		{"test", "rules", "closewait-rules_test.yml"},
	} {
		cmd := exec.Command(p, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestRulesUseExportedMetrics: every alert expression uses only metrics the agent exports.
func TestRulesUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("prometheus/closewait-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Record string            `yaml:"record"`
				Expr   string            `yaml:"expr"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("rules YAML: %v", err)
	}
	n := 0
	var records []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				// level:metric:operation, the metric one the agent exports.
				checkExpr(t, "record "+r.Record, r.Expr)
				if parts := strings.Split(r.Record, ":"); len(parts) != 3 || !strings.Contains(r.Expr, parts[1]) && !strings.HasPrefix(parts[1], "closewait_") {
					t.Errorf("record %s: want level:metric:operation", r.Record)
				}
				records = append(records, r.Record)
				continue
			}
			n++
			checkExpr(t, "alert "+r.Alert, r.Expr)
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q", r.Alert, s)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d rules, want count, fd share, age (2) and growth at least", n)
	}
	for _, want := range []string{"remote:closewait_pool_idle_server_timeout_seconds:max", "remote:closewait_pool_idle_sockets:sum", "remote:closewait_pool_idle_sockets:count"} {
		if !slices.Contains(records, want) {
			t.Errorf("no recording rule %s (the fleet's upstreams and their idle timeouts)", want)
		}
	}
}

type panel struct {
	Type        string  `json:"type"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Panels      []panel `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit       string `json:"unit"`
			Thresholds struct {
				Steps []json.RawMessage `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestGrafanaDashboard: the dashboard imports cleanly (__inputs, datasource
// variable), every panel has a unit, a description and thresholds, and every
// query uses only metrics the agent exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/closewait-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		UID          string  `json:"uid"`
		GraphTooltip int     `json:"graphTooltip"`
		Panels       []panel `json:"panels"`
		Templating   struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(d.Inputs) == 0 || d.Inputs[0].Type != "datasource" || d.UID == "" || d.GraphTooltip != 1 {
		t.Errorf("__inputs %+v, uid %q, graphTooltip %d", d.Inputs, d.UID, d.GraphTooltip)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type == "query" {
			var q struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &q) != nil {
				t.Errorf("variable %s: query is not an object", v.Name)
			}
			checkExpr(t, "variable "+v.Name, q.Query)
		}
	}
	if want := []string{"datasource", "job", "instance", "comm"}; !slices.Equal(vars, want) {
		t.Errorf("variables %v, want %v", vars, want)
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			all = append(all, p)
		}
	}
	walk(d.Panels)
	if len(all) < 8 {
		t.Errorf("%d panels, want stat tiles, time series, findings table and agent panels", len(all))
	}
	for _, p := range all {
		where := p.Type + " " + strings.TrimSpace(p.Title)
		if p.Description == "" || p.FieldConfig.Defaults.Unit == "" || len(p.FieldConfig.Defaults.Thresholds.Steps) == 0 {
			t.Errorf("%s: description %q, unit %q, %d threshold steps", where, p.Description, p.FieldConfig.Defaults.Unit, len(p.FieldConfig.Defaults.Thresholds.Steps))
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %q, want the ${datasource} variable", where, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			checkExpr(t, where, tg.Expr)
		}
	}
}

// TestKubernetesDaemonSet: the manifest parses and keeps its privileges to
// what the agent needs.
func TestKubernetesDaemonSet(t *testing.T) {
	b, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					HostPID     bool `yaml:"hostPID"`
					HostNetwork bool `yaml:"hostNetwork"`
					Containers  []struct {
						Args            []string `yaml:"args"`
						SecurityContext struct {
							RunAsUser                *int  `yaml:"runAsUser"`
							Privileged               bool  `yaml:"privileged"`
							AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
							ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
							Capabilities             struct {
								Drop []string `yaml:"drop"`
								Add  []string `yaml:"add"`
							} `yaml:"capabilities"`
						} `yaml:"securityContext"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(false)
	if err := dec.Decode(&ds); err != nil {
		t.Fatalf("daemonset YAML: %v", err)
	}
	ps := ds.Spec.Template.Spec
	if ds.Kind != "DaemonSet" || !ps.HostPID || !ps.HostNetwork || len(ps.Containers) != 1 {
		t.Fatalf("kind %q hostPID %v hostNetwork %v containers %d", ds.Kind, ps.HostPID, ps.HostNetwork, len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if len(c.Args) == 0 || c.Args[0] != "agent" {
		t.Errorf("args %v, want agent ...", c.Args)
	}
	if sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("securityContext %+v", sc)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []string{"SYS_PTRACE", "DAC_READ_SEARCH", "BPF", "PERFMON"}) {
		t.Errorf("capabilities drop %v add %v, want drop ALL, add SYS_PTRACE DAC_READ_SEARCH BPF PERFMON only", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
}

// TestSystemdUnit: the unit is hardened and, where systemd-analyze exists, verifies.
func TestSystemdUnit(t *testing.T) {
	const path = "systemd/closewait-agent.service"
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("unit line %q is not key=value", line)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	for k, want := range map[string]string{
		"CapabilityBoundingSet": "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_BPF CAP_PERFMON",
		"AmbientCapabilities":   "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_BPF CAP_PERFMON",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "read-only",
		"PrivateTmp":            "yes",
		"KillSignal":            "SIGTERM",
	} {
		if got := strings.Join(keys[k], ";"); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if exec := strings.Join(keys["ExecStart"], ""); !strings.Contains(exec, " agent ") || !strings.Contains(exec, "127.0.0.1:") {
		t.Errorf("ExecStart=%q, want closewait agent on localhost", exec)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: syntax not verified")
		return
	}
	// verify wants the binary to exist: check a copy that runs /bin/true.
	b, _ := os.ReadFile(path)
	tmp := filepath.Join(t.TempDir(), "closewait-agent.service")
	os.WriteFile(tmp, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/closewait", "/bin/true")), 0o644)
	if out, err := exec.Command(sa, "verify", tmp).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
