package agent

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/agent/web"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/report"
)

// Dashboard limits: rows in the problems table, detail sections with charts.
const (
	maxRows    = 100
	maxDetails = 10
	dataRows   = 30 // rows of the "show data" table per process
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
}

type rowData struct {
	PID                      int
	Link                     string // to its details: #pPID, or /?pid=PID#pPID beyond the first maxDetails
	Status, Word, Icon       string
	Comm, Cmdline, CmdShort  string
	Container                string
	CloseWait, Delta, Oldest string
	OpenFDs                  int
	FDLimit                  string
	FDShare                  float64
	FDPercent                string
	Spark                    template.HTML
	Causes                   []string
	points                   []Point
	proc                     *diagnose.ProcessReport
}

type detailData struct {
	rowData
	Reasons              []string
	Findings             []findingData
	SSLine               string
	CWSummary, FDSummary string
	Data                 []dataRow
}

type findingData struct {
	Cause, Line         string
	Evidence, NextSteps []string
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
// title for screen readers. It only formats numbers, so its output is safe HTML.
func sparkline(values []float64, label string) template.HTML {
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
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s"><title>%s</title><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="`,
		w, h, w, h, template.HTMLEscapeString(label), template.HTMLEscapeString(label))
	for i, v := range values {
		x := w * float64(i) / float64(len(values)-1)
		y := h - 2 - (h-4)*(v-lo)/(hi-lo)
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}

// deltaPerMinute is the change of CLOSE_WAIT over the last minute or so of points.
func deltaPerMinute(pts []Point) (float64, bool) {
	if len(pts) < 2 {
		return 0, false
	}
	last := pts[len(pts)-1]
	first := pts[0]
	for i := len(pts) - 2; i >= 0; i-- {
		first = pts[i]
		if last.Time.Sub(first.Time) >= time.Minute {
			break
		}
	}
	dt := last.Time.Sub(first.Time).Minutes()
	if dt <= 0 {
		return 0, false
	}
	return float64(last.CloseWait-first.CloseWait) / dt, true
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
	q, err := checkQuery(r, "pid")
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
	now := time.Now()
	d := pageData{
		Version:    a.opt.Version,
		Uptime:     diagnose.FormatAge(now.Sub(a.started).Round(time.Second)),
		Interval:   a.opt.Interval.String(),
		IntervalMS: a.opt.Interval.Milliseconds(),
		Errors:     a.errors.Load(),
		LastScan:   "pending",
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
	if st != nil && st.Report != nil {
		a.fillReport(&d, st.Report, now, focus)
		status = st.Report.Status
	}
	d.Status, d.StatusWord, d.StatusIcon = statusLook(status)
	if st != nil && st.Report == nil && st.Err != nil {
		d.Status, d.StatusWord, d.StatusIcon = "critical", "ERROR", "✖"
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
		d.TotalSpark = sparkline(vals, d.TotalSummary)
		if dm, ok := deltaPerMinute(totals); ok {
			d.Trend = signed(dm) + "/min"
		}
	}
	d.Affected = report.Thousands(len(rep.Processes))
	d.Unattributed = report.Thousands(rep.Unattributed.Count)

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
		switch {
		case th.FDShareCritical > 0 && s > th.FDShareCritical:
			d.WorstFDStatus = "critical"
		case th.FDShareWarning > 0 && s > th.FDShareWarning:
			d.WorstFDStatus = "warning"
		}
	}
	if hasAge {
		d.Oldest = diagnose.FormatAge(oldest)
		switch {
		case th.AgeCritical > 0 && oldest > th.AgeCritical:
			d.OldestStatus = "critical"
		case th.AgeWarning > 0 && oldest > th.AgeWarning:
			d.OldestStatus = "warning"
		}
	}

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
		if i < maxDetails || p.PID == focus {
			d.Details = append(d.Details, detail(row))
		}
	}
	if focus != 0 && !slices.ContainsFunc(d.Details, func(dd detailData) bool { return dd.PID == focus }) {
		for _, p := range rep.Processes {
			if p.PID == focus { // beyond the table's rows
				d.Details = append(d.Details, detail(a.row(p, from)))
			}
		}
	}
	d.Focus = focus
}

func (a *Agent) row(p *diagnose.ProcessReport, from time.Time) rowData {
	row := rowData{PID: p.PID, Comm: Comm(p), CloseWait: report.Thousands(p.CloseWait), Oldest: "—", Delta: "—", proc: p}
	row.Status, row.Word, row.Icon = statusLook(p.Status)
	if pr := p.Process; pr != nil {
		row.Cmdline = pr.Cmdline
		row.OpenFDs = pr.OpenFDs
		if pr.Container.ID != "" {
			c := pr.Container.ID
			if len(c) > 12 {
				c = c[:12]
			}
			row.Container = pr.Container.Runtime + " " + c
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
	row.Spark = sparkline(vals, trendSummary(fmt.Sprintf("CLOSE_WAIT for %s %d", row.Comm, p.PID), row.points, func(p Point) int { return p.CloseWait }))
	return row
}

func detail(row rowData) detailData {
	p := row.proc
	dd := detailData{rowData: row, Reasons: p.Reasons}
	for _, f := range p.Findings {
		dd.Findings = append(dd.Findings, findingData{Cause: f.Cause, Line: report.FindingLine(f), Evidence: f.Evidence, NextSteps: f.NextSteps})
	}
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
