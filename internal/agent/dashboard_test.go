package agent_test

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

// TestDashboardFindingsAsExplain: a real holder with two findings; its
// details on the dashboard carry each finding as `closewait explain` prints
// it (title, evidence, check, next steps, fix), every evidence sentence and
// fix line exactly once, and the command line and where the process runs.
func TestDashboardFindingsAsExplain(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 6, Unread: 6}) // each more than a normal half-close (5)
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	scan(t, a)
	scan(t, a)
	pid := strconv.Itoa(h.PID)
	code, body := get(t, url+"/api/v1/processes/"+pid)
	var p report.JSONProcess
	if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
		t.Fatalf("process API: %d %.300s", code, body)
	}
	if len(p.Findings) < 2 {
		t.Fatalf("holder %s has %d findings, want missing-close and abandoned-unread", pid, len(p.Findings))
	}
	code, page := get(t, url+"/?pid="+pid)
	if code != 200 {
		t.Fatalf("/?pid=%s: %d", pid, code)
	}
	start := strings.Index(page, `<details class="detail" id="p`+pid+`"`)
	end := strings.Index(page[max(start, 0):], "<details><summary>Show data")
	if start < 0 || end < 0 {
		t.Fatalf("no details section for %s", pid)
	}
	sec := page[start : start+end]
	once := func(what, s string) {
		t.Helper()
		if n := strings.Count(sec, template.HTMLEscapeString(s)); n != 1 {
			t.Errorf("%s %q appears %d times in the details, want once", what, s, n)
		}
	}
	for i, f := range p.Findings {
		if !strings.Contains(sec, fmt.Sprintf("%d. <span class=\"tag\">%s</span> %s", i+1, f.Cause, template.HTMLEscapeString(report.CauseTitle(f.Cause)))) {
			t.Errorf("finding %d (%s) has no explain-style title", i+1, f.Cause)
		}
		for _, e := range f.Evidence {
			once("evidence", e)
		}
		if f.Check != "" && !strings.Contains(sec, template.HTMLEscapeString(f.Check)) {
			t.Errorf("finding %s: no check %q", f.Cause, f.Check)
		}
		if len(f.Fix) == 0 {
			t.Errorf("finding %s has no fix in the API", f.Cause)
		}
	}
	// Fix and next-step blocks equal to an earlier finding's are referred to.
	for _, f := range p.Findings {
		for _, l := range f.Fix {
			once("fix line", l)
		}
	}
	if !strings.Contains(sec, "Fix:") {
		t.Errorf("details without a fix")
	}
	if !strings.Contains(sec, template.HTMLEscapeString(p.Cmdline)) || !strings.Contains(sec, "<dt>Runs in</dt>") {
		t.Errorf("details lack the full command line %q or where the process runs", p.Cmdline)
	}
	// The row: the command line on hover.
	if !strings.Contains(page, `title="`+template.HTMLEscapeString(p.Cmdline)+`"`) {
		t.Errorf("the row has no full command line on hover")
	}
}

// TestDashboardWallParam: ?wall=1 serves the wall view (status summary,
// cards, no table), ?wall=0 the full one, anything else is a 400.
func TestDashboardWallParam(t *testing.T) {
	cwtest.Start(t, cwtest.Spec{Unread: 1})
	a := newAgent(t, agent.Options{})
	url := serve(t, a)
	scan(t, a)
	for _, tt := range []struct {
		q    string
		code int
		want string
		not  string
	}{
		{"/?wall=1", 200, `<body data-interval="3600000" class="wall">`, `<table class="problems">`},
		{"/?wall=0", 200, `<table class="problems">`, `class="wall"`},
		{"/", 200, `<section class="summary status-`, `class="wall"`},
		{"/?wall=yes", 400, "wall must be 1 or 0", ""},
	} {
		code, body := get(t, url+tt.q)
		if code != tt.code || !strings.Contains(body, tt.want) || tt.not != "" && strings.Contains(body, tt.not) {
			t.Errorf("%s: %d, want %d with %q and without %q (%.200s)", tt.q, code, tt.code, tt.want, tt.not, body)
		}
	}
}
