package agent

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/agent/web"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/history"
	"github.com/closewait/closewait/internal/origins"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/report"
)

// Dashboard limits: rows in the problems table, detail sections with charts.
const (
	maxRows    = 100
	maxDetails = 10
	dataRows   = 30 // rows of the "show data" table per process
	maxOrigins = 5  // origins shown per process (agent --trace)
)

var pageTemplate = template.Must(template.New("index").Parse(web.Template))

// static maps the /static/ names to embedded files and their content types.
var static = map[string]struct{ file, ctype string }{
	"app.js":            {"app.js", "text/javascript; charset=utf-8"},
	"app.css":           {"app.css", "text/css; charset=utf-8"},
	"uPlot.iife.min.js": {"uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"},
	"uPlot.min.css":     {"uplot/uPlot.min.css", "text/css; charset=utf-8"},
	"uPlot-LICENSE.txt": {"uplot/LICENSE", "text/plain; charset=utf-8"},
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := static[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(web.Static, f.file)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "asset missing from the binary")
		return
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

type pageData struct {
	Host, Version, Uptime, LastScan, ScanDuration, ScanError, Interval string
	IntervalMS                                                         int64
	Errors                                                             uint64
	Status, StatusWord, StatusIcon                                     string
	HasReport                                                          bool

	CloseWait, Trend, TotalStatus string
	TotalSpark                    template.HTML
	Total                         bool
	TotalSummary                  string
	Affected, Unattributed        string
	WorstFD, WorstFDWho           string
	WorstFDStatus                 string
	Oldest, OldestStatus          string
	Notices                       []string

	Rows    []rowData
	Hidden  int
	Details []detailData
	Focus   int // ?pid=: its details are open

	// Wall is ?wall=1: large type, the status summary and the problems only.
	Wall bool
	// Headline is the status summary in one sentence ("2 processes need
	// attention"); Problems are the processes that are not ok, worst first.
	Headline   string
	Problems   []rowData
	TrendTitle string
}

type rowData struct {
	PID                     int
	Link                    string // to its details: #pPID, or /?pid=PID#pPID beyond the first maxDetails
	Status, Word, Icon      string
	Comm, Cmdline, CmdShort string
	Container               string
	// Place tells two processes of the same name apart: their systemd unit
	// or container (from the cgroup), else their user.
	Place, Cgroup, User, Runtime string
	CloseWait, Delta, Oldest     string
	OpenFDs                      int
	FDLimit                      string
	FDShare                      float64
	FDPercent                    string
	Spark                        template.HTML
	Causes                       []string
	points                       []Point
	proc                         *diagnose.ProcessReport
}

type detailData struct {
	rowData
	Reasons  []string
	Findings []findingData
	Common   []string // evidence every finding shares, said once
	// Origins is where the process's CLOSE_WAIT sockets were made, its top
	// maxOrigins origins as `closewait trace` prints them (agent --trace);
	// Tracing says the agent traces at all; Accepts, that sockets made by
	// accept() are recorded now (see origins.Table).
	Origins              string
	Tracing, Accepts     bool
	SSLine               string
	CWSummary, FDSummary string
	Data                 []dataRow
}

// findingData is a finding as `closewait explain` prints it: title, facts,
// evidence, the ss check, next steps and the fix; steps or a fix already
// shown for an earlier finding of the process refer to it ("as in 1.").
type findingData struct {
	N                          int
	Cause, Title, Facts, Check string
	Evidence, NextSteps, Fix   []string
	StepsAsIn, FixAsIn         int
	EvidenceAsIn               int // some evidence is an earlier finding's
	NotAProblem                bool
}

type dataRow struct {
	Time               string
	CloseWait, OpenFDs int
	FDLimit            string
}

func statusLook(s diagnose.Status) (class, word, icon string) {
	switch s {
	case diagnose.Critical:
		return "critical", "CRIT", "✖"
	case diagnose.Warning:
		return "warning", "WARN", "▲"
	}
	return "ok", "ok", "✓"
}

// sparkline draws values as an inline SVG polyline (no script), with a
// title for screen readers, coloured by status (class status-ok is grey:
// red only when the status is critical). It only formats numbers and
// escaped text, so its output is safe HTML.
func sparkline(values []float64, label, status string) template.HTML {
	const w, h = 120.0, 24.0
	if len(values) < 2 {
		return template.HTML(`<span class="muted">—</span>`)
	}
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		hi = lo + 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark status-%s" viewBox="0 0 %g %g" width="%g" height="%g" preserveAspectRatio="none" role="img" aria-label="%s"><title>%s</title><polyline fill="none" stroke="currentColor" stroke-width="1.5" vector-effect="non-scaling-stroke" points="`,
		template.HTMLEscapeString(status), w, h, w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(label))
	for i, v := range values {
		x := w * float64(i) / float64(len(values)-1)
		y := h - 2 - (h-4)*(v-lo)/(hi-lo)
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}

// DeltaWindow is the span of the dashboard's Δ/min: the same 5 minutes as
// the recording rule instance:closewait_close_wait_growth_per_minute:rate5m,
// (rate(closewait_close_wait_entered_total[5m]) - rate(..._left_total[5m])) * 60.
const DeltaWindow = 5 * time.Minute

// deltaPerMinute is the change of CLOSE_WAIT per minute over the last
// DeltaWindow of points (or all of them when the history is shorter), by
// closewait's one definition of growth (history.GrowthOver).
func deltaPerMinute(pts []Point) (float64, bool) {
	g, ok := history.GrowthOver(pts, DeltaWindow, func(p Point) (time.Time, int) { return p.Time, p.CloseWait })
	return g.PerMin, ok
}

func signed(v float64) string {
	switch {
	case v > 0.05:
		return fmt.Sprintf("+%.1f ↑", v)
	case v < -0.05:
		return fmt.Sprintf("−%.1f ↓", -v)
	}
	return "0"
}

func trendSummary(what string, pts []Point, val func(Point) int) string {
	if len(pts) == 0 {
		return what + ": no history yet"
	}
	a, b := pts[0], pts[len(pts)-1]
	verb := "stayed at"
	switch {
	case val(b) > val(a):
		verb = fmt.Sprintf("rose from %s to", report.Thousands(val(a)))
	case val(b) < val(a):
		verb = fmt.Sprintf("fell from %s to", report.Thousands(val(a)))
	}
	return fmt.Sprintf("%s %s %s in %s", what, verb, report.Thousands(val(b)), diagnose.FormatAge(b.Time.Sub(a.Time)))
}

func (a *Agent) dashboard(w http.ResponseWriter, r *http.Request) {
	q, err := checkQuery(r, "pid", "wall")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	focus := 0 // ?pid=N: show that process's details even beyond the first maxDetails
	if v, ok := q["pid"]; ok {
		if focus, err = parsePID(v[0]); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	wall := false // ?wall=1: the view for a screen on the wall
	if v, ok := q["wall"]; ok {
		switch v[0] {
		case "1":
			wall = true
		case "0":
		default:
			httpError(w, http.StatusBadRequest, fmt.Sprintf("wall must be 1 or 0, got %q", trunc(v[0])))
			return
		}
	}
	now := time.Now()
	d := pageData{
		Version:    a.opt.Version,
		Uptime:     diagnose.FormatAge(now.Sub(a.started).Round(time.Second)),
		Interval:   a.opt.Interval.String(),
		IntervalMS: a.opt.Interval.Milliseconds(),
		Errors:     a.errors.Load(),
		LastScan:   "pending",
		Wall:       wall,
		TrendTitle: fmt.Sprintf("Change per minute over the last %s: in PromQL (rate(closewait_close_wait_entered_total[5m]) - rate(closewait_close_wait_left_total[5m])) * 60", diagnose.FormatAge(DeltaWindow)),
	}
	d.Host = hostname()
	st := a.state.Load()
	status := diagnose.OK
	if st != nil {
		d.LastScan = st.Time.UTC().Format("15:04:05") + " UTC"
		d.ScanDuration = st.Duration.Round(time.Millisecond).String()
		if st.Err != nil {
			d.ScanError = st.Err.Error()
		}
	}
	d.Headline = "Waiting for the first scan"
	if st != nil && st.Report != nil {
		a.fillReport(&d, st.Report, now, focus)
		status = st.Report.Status
	}
	d.Status, d.StatusWord, d.StatusIcon = statusLook(status)
	if st != nil && st.Report == nil && st.Err != nil {
		d.Status, d.StatusWord, d.StatusIcon = "critical", "ERROR", "✖"
		d.Headline = "The agent cannot scan: " + st.Err.Error()
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		httpError(w, http.StatusInternalServerError, "dashboard: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodHead {
		_, _ = buf.WriteTo(w)
	}
}

// headline is the status summary a room reads from afar.
func headline(rep *diagnose.Report, problems int) string {
	switch {
	case problems == 1:
		return "1 process needs attention"
	case problems > 1:
		return fmt.Sprintf("%d processes need attention", problems)
	case rep.Unattributed.Status != diagnose.OK:
		return fmt.Sprintf("%s CLOSE_WAIT sockets with no owner found", report.Thousands(rep.Unattributed.Count))
	case len(rep.Processes) > 0:
		return fmt.Sprintf("All clear: %s CLOSE_WAIT sockets, none a problem", report.Thousands(rep.CloseWait))
	}
	return "All clear: no CLOSE_WAIT sockets"
}

func (a *Agent) fillReport(d *pageData, rep *diagnose.Report, now time.Time, focus int) {
	d.HasReport = true
	if rep.Snapshot != nil && rep.Snapshot.Host != "" {
		d.Host = rep.Snapshot.Host
		d.Notices = rep.Snapshot.Notices
	}
	from := now.Add(-a.opt.Retention)
	totals, _ := a.hist.Totals(from)
	d.CloseWait = report.Thousands(rep.CloseWait)
	d.TotalStatus, _, _ = statusLook(rep.Status)
	if len(totals) > 1 {
		d.Total = true
		vals := make([]float64, len(totals))
		for i, p := range totals {
			vals[i] = float64(p.CloseWait)
		}
		d.TotalSummary = trendSummary("CLOSE_WAIT on the host", totals, func(p Point) int { return p.CloseWait })
		d.TotalSpark = sparkline(vals, d.TotalSummary, d.TotalStatus)
		if dm, ok := deltaPerMinute(totals); ok {
			d.Trend = signed(dm) + "/min"
		}
	}
	d.Affected = report.Thousands(len(rep.Processes))
	d.Unattributed = report.Thousands(rep.Unattributed.Count)

	// The tiles are judged by diagnose's thresholds, as the processes are.
	d.WorstFD, d.WorstFDStatus, d.Oldest, d.OldestStatus = "—", "ok", "—", "ok"
	var worst *diagnose.ProcessReport
	var oldest time.Duration
	hasAge := false
	for _, p := range rep.Processes {
		if p.FDShare() > 0 && (worst == nil || p.FDShare() > worst.FDShare()) {
			worst = p
		}
		if p.HasAge {
			hasAge = true
			oldest = max(oldest, p.Oldest)
		}
	}
	if rep.Unattributed.HasAge {
		hasAge = true
		oldest = max(oldest, rep.Unattributed.Oldest)
	}
	th := rep.Thresholds
	if worst != nil {
		s := worst.FDShare()
		d.WorstFD = fmt.Sprintf("%.0f %%", s*100)
		d.WorstFDWho = fmt.Sprintf("%s (pid %d)", Comm(worst), worst.PID)
		d.WorstFDStatus, _, _ = statusLook(th.FDShareStatus(s))
	}
	if hasAge {
		d.Oldest = diagnose.FormatAge(oldest)
		d.OldestStatus, _, _ = statusLook(th.AgeStatus(oldest))
	}

	var origs *origins.Report
	if a.opt.Origins != nil {
		origs, _ = a.opt.Origins.Report()
	}
	detail := func(row rowData) detailData { return detail(row, a.opt.Origins != nil, origs) }
	procs := rep.Processes
	if len(procs) > maxRows {
		d.Hidden = len(procs) - maxRows
		procs = procs[:maxRows]
	}
	for i, p := range procs {
		row := a.row(p, from)
		row.Link = fmt.Sprintf("#p%d", p.PID)
		if i >= maxDetails && p.PID != focus {
			row.Link = fmt.Sprintf("/?pid=%d#p%d", p.PID, p.PID)
		}
		d.Rows = append(d.Rows, row)
		if p.Status != diagnose.OK {
			d.Problems = append(d.Problems, row)
		}
		if i < maxDetails || p.PID == focus {
			d.Details = append(d.Details, detail(row))
		}
	}
	problems := 0
	for _, p := range rep.Processes {
		if p.Status != diagnose.OK {
			problems++
		}
	}
	d.Headline = headline(rep, problems)
	if focus != 0 && !slices.ContainsFunc(d.Details, func(dd detailData) bool { return dd.PID == focus }) {
		for _, p := range rep.Processes {
			if p.PID == focus { // beyond the table's rows
				d.Details = append(d.Details, detail(a.row(p, from)))
			}
		}
	}
	d.Focus = focus
}

// placeOf tells where a process runs: its container, else its systemd
// unit (the last element of its cgroup path naming a service or scope),
// else its user; what tells two processes of the same name apart.
func placeOf(pr *procscan.Process) string {
	if c := pr.Container; c.ID != "" {
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		s := strings.TrimSpace(c.Runtime + " " + id)
		if c.PodUID != "" {
			s += " · pod " + c.PodUID
		}
		return s
	}
	if unit := path.Base(pr.Cgroup); (strings.HasSuffix(unit, ".service") || strings.HasSuffix(unit, ".scope")) && unit != "init.scope" {
		return unit
	}
	if pr.User != "" {
		return "user " + pr.User
	}
	return ""
}

func (a *Agent) row(p *diagnose.ProcessReport, from time.Time) rowData {
	row := rowData{PID: p.PID, Comm: Comm(p), CloseWait: report.Thousands(p.CloseWait), Oldest: "—", Delta: "—", Runtime: p.Runtime, proc: p}
	row.Status, row.Word, row.Icon = statusLook(p.Status)
	if pr := p.Process; pr != nil {
		row.Cmdline = pr.Cmdline
		row.OpenFDs = pr.OpenFDs
		row.Place, row.Cgroup, row.User = placeOf(pr), pr.Cgroup, pr.User
		if pr.Container.ID != "" {
			row.Container = row.Place
		}
		if s := pr.FDUsage(); s > 0 {
			row.FDShare = s
			row.FDLimit = report.Thousands(int(pr.FDSoft))
			row.FDPercent = fmt.Sprintf("%.0f%%", s*100)
		}
	}
	row.CmdShort = row.Cmdline
	if r := []rune(row.CmdShort); len(r) > 60 {
		row.CmdShort = string(r[:59]) + "…"
	}
	if p.HasAge {
		row.Oldest = diagnose.FormatAge(p.Oldest)
	}
	seen := map[string]bool{}
	for _, f := range p.Findings {
		if !seen[f.Cause] {
			seen[f.Cause] = true
			row.Causes = append(row.Causes, f.Cause)
		}
	}
	row.points, _ = a.hist.Series(p.PID, from)
	if dm, ok := deltaPerMinute(row.points); ok {
		row.Delta = signed(dm)
	}
	vals := make([]float64, len(row.points))
	for i, pt := range row.points {
		vals[i] = float64(pt.CloseWait)
	}
	row.Spark = sparkline(vals, trendSummary(fmt.Sprintf("CLOSE_WAIT for %s %d", row.Comm, p.PID), row.points, func(p Point) int { return p.CloseWait }), row.Status)
	return row
}

// findings lays out a process's findings as `closewait explain` prints
// them, each sentence once: evidence every finding shares is returned once
// (common), evidence shown for an earlier finding and a block of next steps
// or a fix equal to an earlier finding's refer to it.
func findings(fs []diagnose.Finding) (out []findingData, common []string) {
	if len(fs) > 1 {
		for _, e := range fs[0].Evidence {
			all := true
			for _, f := range fs[1:] {
				all = all && slices.Contains(f.Evidence, e)
			}
			if all && !slices.Contains(common, e) {
				common = append(common, e)
			}
		}
	}
	shown := map[string]int{}
	steps, fixes := map[string]int{}, map[string]int{}
	// once keeps the lines no earlier finding showed, and names the first
	// finding that showed any of the others.
	once := func(lines []string, seen map[string]int, n int) (fresh []string, asIn int) {
		for _, l := range lines {
			if first, ok := seen[l]; ok {
				if asIn == 0 || first < asIn {
					asIn = first
				}
				continue
			}
			seen[l] = n
			fresh = append(fresh, l)
		}
		return fresh, asIn
	}
	for i, f := range fs {
		fd := findingData{N: i + 1, Cause: f.Cause, Title: report.CauseTitle(f.Cause), Facts: report.FindingFacts(f),
			Check: f.Check, NotAProblem: f.Cause == diagnose.CauseNormalHalfClose}
		for _, e := range f.Evidence {
			switch first, ok := shown[e]; {
			case slices.Contains(common, e):
			case ok:
				if fd.EvidenceAsIn == 0 {
					fd.EvidenceAsIn = first
				}
			default:
				shown[e] = fd.N
				fd.Evidence = append(fd.Evidence, e)
			}
		}
		fd.NextSteps, fd.StepsAsIn = once(f.NextSteps, steps, fd.N)
		fd.Fix, fd.FixAsIn = once(f.Fix, fixes, fd.N)
		out = append(out, fd)
	}
	return out, common
}

// originsOf is the top maxOrigins origins of a process (the report lists
// them worst first), as `closewait trace` prints them; "" when none.
func originsOf(r *origins.Report, pid int) string {
	if r == nil {
		return ""
	}
	var sel []origins.Origin
	for _, o := range r.Origins {
		if o.PID == pid && len(sel) < maxOrigins {
			sel = append(sel, o)
		}
	}
	if len(sel) == 0 {
		return ""
	}
	var b strings.Builder
	_ = origins.WriteText(&b, &origins.Report{Origins: sel}, origins.TextOptions{}) // frames as the CLI prints them (32: deep enough for Go's dial stack with its inlined calls)
	return strings.TrimSpace(b.String())
}

func detail(row rowData, tracing bool, origs *origins.Report) detailData {
	p := row.proc
	dd := detailData{rowData: row, Reasons: p.Reasons, Tracing: tracing, Origins: originsOf(origs, p.PID),
		Accepts: origs != nil && origs.AcceptsTraced}
	dd.Findings, dd.Common = findings(p.Findings)
	dd.SSLine = fmt.Sprintf("ss -tanpi state close-wait | grep -F 'pid=%d,'", p.PID)
	who := fmt.Sprintf("%s %d", row.Comm, p.PID)
	dd.CWSummary = trendSummary("CLOSE_WAIT for "+who, row.points, func(p Point) int { return p.CloseWait })
	dd.FDSummary = trendSummary("Open fds for "+who, row.points, func(p Point) int { return p.OpenFDs })
	pts := row.points
	if len(pts) > dataRows {
		pts = pts[len(pts)-dataRows:]
	}
	for i := len(pts) - 1; i >= 0; i-- {
		pt := pts[i]
		lim := "unlimited"
		if pt.FDLimit > 0 {
			lim = report.Thousands(int(pt.FDLimit))
		}
		dd.Data = append(dd.Data, dataRow{Time: pt.Time.UTC().Format("15:04:05"), CloseWait: pt.CloseWait, OpenFDs: pt.OpenFDs, FDLimit: lim})
	}
	return dd
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "?"
	}
	return h
}
