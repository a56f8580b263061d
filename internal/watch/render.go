package watch

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/report"
)

// Styles. Colour only reinforces words; selection is reverse video, which
// survives NO_COLOR.
var (
	styleCrit  = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleWarn  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleSel   = lipgloss.NewStyle().Reverse(true)
	styleHead  = lipgloss.NewStyle().Bold(true)
	styleFaint = lipgloss.NewStyle().Faint(true)
	styleUp    = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
)

func statusStyle(s diagnose.Status) lipgloss.Style {
	switch s {
	case diagnose.Critical:
		return styleCrit
	case diagnose.Warning:
		return styleWarn
	}
	return lipgloss.NewStyle()
}

func statusShort(s diagnose.Status) string {
	switch s {
	case diagnose.Critical:
		return "CRIT"
	case diagnose.Warning:
		return "WARN"
	}
	return "ok"
}

// column is one table column: a fixed width, right-aligned or not.
type column struct {
	name  string
	width int
	right bool
	sort  int
}

// columns picks the columns that fit the width: TREND goes first, then FD
// USE, then OLDEST; COMMAND takes what is left.
func (m *Model) columns() (cols []column, cmdWidth int) {
	all := []column{
		{"PID", 7, false, sortPID},
		{"COMMAND", 0, false, sortCommand},
		{"CW", 7, true, sortCW},
		{"Δ/MIN", 7, true, sortGrowth},
		{"OLDEST", 7, true, sortOldest},
		{"FD USE", 13, false, sortFD},
		{"TREND", 10, false, -1},
		{"STATUS", 6, false, sortStatus},
	}
	drop := map[string]bool{}
	need := func() int {
		n := 2 + 10 // selection mark, minimal command
		for _, c := range all {
			if !drop[c.name] {
				n += c.width + 1
			}
		}
		return n
	}
	for _, name := range []string{"TREND", "FD USE", "OLDEST"} {
		if need() <= m.width {
			break
		}
		drop[name] = true
	}
	for _, c := range all {
		if !drop[c.name] {
			cols = append(cols, c)
		}
	}
	cmdWidth = m.width - need() + 10
	if m.cmdlines {
		return cols, cmdWidth // command lines take all the room there is
	}
	return cols, min(cmdWidth, 40)
}

func pad(s string, w int, right bool) string {
	s = ansi.Truncate(s, w, "…")
	gap := w - lipgloss.Width(s)
	if gap <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", gap) + s
	}
	return s + strings.Repeat(" ", gap)
}

func (m *Model) bodyHeight() int { return max(m.height-5, 1) }

// View implements tea.Model.
func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "closewait watch"
	return v
}

func (m *Model) render() string {
	if m.width < MinWidth {
		return wrapWords(fmt.Sprintf("terminal too narrow (need ≥ %d columns)", MinWidth), m.width)
	}
	var b strings.Builder
	header := m.header()
	for _, l := range header {
		b.WriteString(ansi.Truncate(l, m.width, "…"))
		b.WriteByte('\n')
	}
	if m.help {
		for _, l := range helpLines {
			b.WriteString(ansi.Truncate(l, m.width, "…"))
			b.WriteByte('\n')
		}
		b.WriteString(styleFaint.Render("any key: back"))
		return b.String()
	}
	cols, cmdW := m.columns()
	b.WriteString(m.tableHeader(cols, cmdW))
	b.WriteByte('\n')
	body := m.body(cols, cmdW)
	h := m.bodyHeight()
	if m.offset > len(body) {
		m.offset = 0
	}
	end := min(m.offset+h, len(body))
	for _, l := range body[m.offset:end] {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for i := end - m.offset; i < h; i++ {
		b.WriteByte('\n')
	}
	b.WriteString(styleFaint.Render(strings.Repeat(m.rule(), m.width)))
	b.WriteByte('\n')
	b.WriteString(ansi.Truncate(m.footer(), m.width, "…"))
	return b.String()
}

func (m *Model) rule() string {
	if m.opt.ASCII {
		return "-"
	}
	return "─"
}

func (m *Model) header() []string {
	t := m.shown
	host, when := "", ""
	if t != nil {
		host = t.Report.Snapshot.Host
		when = t.Report.Snapshot.Time.UTC().Format("15:04:05 UTC")
	}
	state := "▶ live"
	if m.opt.ASCII {
		state = "> live"
	}
	if m.paused {
		state = "paused " + when
		if m.opt.ASCII {
			state = "|| " + state
		} else {
			state = "⏸ " + state
		}
	}
	first := fmt.Sprintf("closewait watch · %s · every %s · %s", host, m.opt.Interval, when)
	if m.width < 60 {
		first = fmt.Sprintf("closewait · %s · %s", host, m.opt.Interval)
	}
	right := state + "   ? help"
	gap := m.width - lipgloss.Width(first) - lipgloss.Width(right)
	if gap >= 1 {
		first += strings.Repeat(" ", gap) + right
	}
	if t == nil {
		second := "taking the first snapshot…"
		if m.err != nil {
			second = styleCrit.Render("error: " + m.err.Error())
		}
		return []string{first, second}
	}
	r := t.Report
	parts := []string{"CLOSE_WAIT " + report.Thousands(r.CloseWait)}
	if t.Span > 0 {
		g := signed(t.GrowthPerMin) + "/min"
		if t.GrowthPerMin > 0 {
			parts[0] += " " + styleUp.Render(m.arrow()+g)
		} else {
			parts[0] += " " + g
		}
	}
	parts = append(parts, fmt.Sprintf("%d procs", len(r.Processes)))
	var oldest time.Duration
	var worst *diagnose.ProcessReport
	for _, p := range r.Processes {
		oldest = max(oldest, p.Oldest)
		if worst == nil || p.FDShare() > worst.FDShare() {
			worst = p
		}
	}
	if oldest > 0 {
		parts = append(parts, "oldest "+diagnose.FormatAge(oldest))
	}
	if m.filter != "" {
		parts = append(parts, fmt.Sprintf("filter %q: %d of %d", m.filter, len(m.rows), len(r.Processes)))
	} else if m.problems {
		parts = append(parts, fmt.Sprintf("problems only: %d of %d", len(m.rows), len(r.Processes)))
	}
	if worst != nil && worst.FDShare() >= 0.005 {
		share := worst.FDShare()
		s := fmt.Sprintf("worst fd %d%% (%s %d)", int(share*100+0.5), comm(worst), worst.PID)
		switch {
		case share >= 0.9:
			s = styleCrit.Render(s)
		case share >= 0.75:
			s = styleWarn.Render(s)
		}
		parts = append(parts, s)
	}
	second := strings.Join(parts, " · ")
	if m.err != nil {
		second = styleCrit.Render("error: "+m.err.Error()) + " · " + second
	}
	return []string{first, second}
}

func (m *Model) arrow() string {
	if m.opt.ASCII {
		return "^"
	}
	return "↑"
}

func (m *Model) tableHeader(cols []column, cmdW int) string {
	var b strings.Builder
	b.WriteString("  ")
	for i, c := range cols {
		w := c.width
		if c.name == "COMMAND" {
			w = cmdW
		}
		name := c.name
		if c.name == "COMMAND" && m.cmdlines {
			name = "COMMAND LINE"
		}
		if c.sort == m.sortBy {
			mark := "▼"
			if m.reverse {
				mark = "▲"
			}
			if m.opt.ASCII {
				mark = map[bool]string{false: "v", true: "^"}[m.reverse]
			}
			name += mark
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pad(name, w, c.right))
	}
	return styleHead.Render(ansi.Truncate(b.String(), m.width, ""))
}

// body renders the rows and the expanded process's detail lines, and
// keeps the selected row's line index for scrolling.
func (m *Model) body(cols []column, cmdW int) []string {
	if m.shown == nil {
		return nil
	}
	if len(m.rows) == 0 {
		msg := "No process holds a CLOSE_WAIT socket."
		if m.filter != "" || m.problems {
			msg = "No process matches."
		}
		return []string{"  " + msg}
	}
	var out []string
	for _, p := range m.rows {
		sel := p.PID == m.selectedPID
		out = append(out, m.row(p, cols, cmdW, sel))
		if p.PID == m.expandedPID {
			for _, l := range m.detail(p) {
				out = append(out, ansi.Truncate(l, m.width, "…"))
			}
		}
	}
	return out
}

func (m *Model) row(p *diagnose.ProcessReport, cols []column, cmdW int, sel bool) string {
	mark := "  "
	if sel {
		mark = "▸ "
		if m.opt.ASCII {
			mark = "> "
		}
	}
	if p.PID == m.expandedPID {
		mark = "▾ "
		if m.opt.ASCII {
			mark = "v "
		}
	}
	var cells []string
	var statusCell string
	for _, c := range cols {
		w := c.width
		var v string
		switch c.name {
		case "PID":
			v = strconv.Itoa(p.PID)
		case "COMMAND":
			w = cmdW
			v = comm(p)
			if m.cmdlines {
				v = cmdline(p)
			}
		case "CW":
			v = report.Thousands(p.CloseWait)
		case "Δ/MIN":
			v = "-"
			if p.Growth != nil {
				v = signed(p.Growth.NetPerMin)
			}
		case "OLDEST":
			v = "-"
			if p.HasAge {
				v = diagnose.FormatAge(p.Oldest)
			}
		case "FD USE":
			v = "?"
			if pr := p.Process; pr != nil {
				v = fdUse(pr)
			}
		case "TREND":
			v = sparkline(m.shown.Trends[p.PID], w, m.opt.ASCII)
		case "STATUS":
			statusCell = pad(statusShort(p.Status), w, false)
			cells = append(cells, "\x00")
			continue
		}
		cells = append(cells, pad(v, w, c.right))
	}
	line := mark + strings.Join(cells, " ")
	if sel {
		line = strings.Replace(line, "\x00", statusCell, 1)
		return styleSel.Render(pad(line, m.width, false))
	}
	return strings.Replace(line, "\x00", statusStyle(p.Status).Render(statusCell), 1)
}

func fdUse(pr *procscan.Process) string {
	switch pr.FDSoft {
	case 0:
		return fmt.Sprintf("%s/?", short(pr.OpenFDs))
	case procscan.Unlimited:
		return fmt.Sprintf("%s/inf", short(pr.OpenFDs))
	}
	return fmt.Sprintf("%s/%s %d%%", short(pr.OpenFDs), short(int(min(pr.FDSoft, 1<<40))), int(pr.FDUsage()*100+0.5))
}

// short prints a count in at most 4 characters: 980, 1.0k, 58k, 1M.
func short(n int) string {
	switch {
	case n < 1000:
		return strconv.Itoa(n)
	case n < 9950:
		return fmt.Sprintf("%.1fk", float64(n)/1000)
	case n < 999500:
		return fmt.Sprintf("%dk", (n+500)/1000)
	case n < 9950000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
	return fmt.Sprintf("%dM", (n+500000)/1000000)
}

// sparkline draws the last w values scaled between their min and max.
func sparkline(vals []int, w int, ascii bool) string {
	levels := []rune("▁▂▃▄▅▆▇█")
	if ascii {
		levels = []rune("_.-=+*#@")
	}
	if len(vals) > w {
		vals = vals[len(vals)-w:]
	}
	if len(vals) == 0 {
		return ""
	}
	lo, hi := slices.Min(vals), slices.Max(vals)
	out := make([]rune, len(vals))
	for i, v := range vals {
		l := 0
		switch {
		case hi > lo:
			l = (v - lo) * (len(levels) - 1) / (hi - lo)
		case v > 0:
			l = len(levels) / 2
		}
		out[i] = levels[l]
	}
	return string(out)
}

// remoteGroup is the sockets of a process to one remote.
type remoteGroup struct {
	remote string
	count  int
	oldest time.Duration
}

// remotes groups a process's sockets by peer: address and port for
// outbound sockets, address alone for inbound ones (clients' ports vary).
func remotes(p *diagnose.ProcessReport) []remoteGroup {
	idx := map[string]int{}
	var out []remoteGroup
	for _, s := range p.Sockets {
		key := s.Remote.String()
		if s.Inbound() {
			key = s.Remote.Addr().String() + " → :" + strconv.Itoa(int(s.Local.Port()))
		}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, remoteGroup{remote: key})
		}
		out[i].count++
		if age, ok := s.Age(); ok {
			out[i].oldest = max(out[i].oldest, age)
		}
	}
	slices.SortFunc(out, func(a, b remoteGroup) int {
		return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.remote, b.remote))
	})
	return out
}

// detail is the expanded view of a process: who it is, its findings, its
// fd outlook and its remotes.
func (m *Model) detail(p *diagnose.ProcessReport) []string {
	const ind = "    "
	var out []string
	if pr := p.Process; pr != nil {
		facts := []string{"user " + pr.User}
		if pr.Container.ID != "" {
			id := pr.Container.ID
			if len(id) > 12 {
				id = id[:12]
			}
			facts = append(facts, "container "+id)
		}
		if !pr.StartTime.IsZero() {
			facts = append(facts, "up "+diagnose.FormatAge(time.Since(pr.StartTime)))
		}
		if p.Runtime != "" && p.Runtime != "other" {
			facts = append(facts, p.Runtime)
		}
		facts = append(facts, pr.Cmdline)
		out = append(out, ind+strings.Join(facts, " · "))
	}
	cross := "✗"
	if m.opt.ASCII {
		cross = "x"
	}
	for _, why := range p.Reasons {
		out = append(out, ind+statusStyle(p.Status).Render("! "+why))
	}
	for _, f := range p.Findings {
		out = append(out, ind+cross+" "+report.FindingLine(f))
		if len(f.NextSteps) > 0 {
			out = append(out, ind+"  → "+f.NextSteps[0])
		}
	}
	if g := p.Growth; g != nil && g.HasETA && p.Process != nil {
		out = append(out, fmt.Sprintf("%s%s fd %d%% of soft limit %s · at %s/min EMFILE in ~%s", ind, cross,
			int(p.FDShare()*100+0.5), report.Thousands(int(min(p.Process.FDSoft, 1<<40))), signed(g.NetPerMin), diagnose.FormatAge(g.ETA)))
	}
	groups := remotes(p)
	if len(groups) > 0 {
		out = append(out, ind+styleHead.Render(fmt.Sprintf("%-28s %7s %7s  %s", "REMOTE", "CW", "OLDEST", "SHARE")))
		for i, g := range groups {
			if i == 5 {
				out = append(out, fmt.Sprintf("%s… %d more remotes", ind, len(groups)-5))
				break
			}
			share := float64(g.count) / float64(max(len(p.Sockets), 1))
			out = append(out, fmt.Sprintf("%s%-28s %7s %7s  %s %3d%%", ind, ansi.Truncate(g.remote, 28, "…"), report.Thousands(g.count),
				diagnose.FormatAge(g.oldest), bar(share, 16, m.opt.ASCII), int(share*100+0.5)))
		}
	}
	for _, f := range p.Findings {
		if f.Check != "" {
			out = append(out, ind+"check: "+f.Check)
			break
		}
	}
	return out
}

func bar(share float64, w int, ascii bool) string {
	n := int(share*float64(w) + 0.5)
	c := "█"
	if ascii {
		c = "#"
	}
	return strings.Repeat(c, n) + strings.Repeat(" ", w-n)
}

// scrollToSelection keeps the selected row (and, when expanded, as much of
// its detail as fits) on screen.
func (m *Model) scrollToSelection() {
	if m.shown == nil || len(m.rows) == 0 {
		m.offset = 0
		return
	}
	line := 0
	for _, p := range m.rows {
		if p.PID == m.selectedPID {
			break
		}
		line++
		if p.PID == m.expandedPID {
			line += len(m.detail(p))
		}
	}
	h := m.bodyHeight()
	if line < m.offset {
		m.offset = line
	}
	if line >= m.offset+h {
		m.offset = line - h + 1
	}
}

func (m *Model) footer() string {
	switch {
	case m.editing:
		return fmt.Sprintf("/ %s▏   %d match · enter apply · esc clear", m.input, len(m.rows))
	case m.expandedPID != 0:
		return "↑/k up • ↓/j down • esc collapse • / filter • s sort • p pause • ? more • q quit"
	}
	if m.width < 60 {
		return "enter expand • / filter • q quit • ? more"
	}
	sortName := sortNames[m.sortBy]
	return "↑/k up • ↓/j down • enter expand • / filter • s sort (" + sortName + ") • c cmdline • p pause • ? more • q quit"
}

// Keys are the live view's keys, one line each, as its help screen and
// `closewait watch --help` list them.
var Keys = []string{
	"↑ ↓ / k j      move            PgUp PgDn Home End   page, first, last",
	"enter / →      expand the process: findings, fd outlook, remotes",
	"esc / ←        collapse; esc again clears the filter",
	"/              filter by command, command line, pid, user, container, port or remote",
	"s  < >         next / previous sort column     r  reverse the order",
	"1..7           sort by CW, Δ/MIN, OLDEST, FD USE, PID, COMMAND, STATUS",
	"c              command lines instead of command names (c again: names)",
	"p / space      pause the display (data keeps being collected)",
	"a              problems only (warning and critical) / all processes",
	"?              this list of keys and columns",
	"q              quit (Ctrl-C quits anywhere)",
}

// Columns explains the live view's columns, as its help screen and
// `closewait watch --help` show them.
var Columns = []string{
	"CW: CLOSE_WAIT sockets held. Δ/MIN: net change per minute over the window.",
	"OLDEST: oldest CLOSE_WAIT age (tcp_info estimate). FD USE: open fds / soft limit.",
	"TREND: CLOSE_WAIT over the last intervals. STATUS: CRIT, WARN or ok.",
}

var helpLines = func() []string {
	out := []string{""}
	for _, k := range Keys {
		out = append(out, "  "+k)
	}
	out = append(out, "")
	for _, c := range Columns {
		out = append(out, "  "+c)
	}
	return out
}()

// wrapWords breaks s into lines of at most width cells, at spaces; a word
// longer than a line is cut. The narrow-terminal message must itself fit.
func wrapWords(s string, width int) string {
	width = max(width, 1)
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		for ansi.StringWidth(w) > width { // a word longer than the line
			if line != "" {
				lines, line = append(lines, line), ""
			}
			head := ansi.Truncate(w, width, "")
			lines = append(lines, head)
			w = w[len(head):]
		}
		switch {
		case line == "":
			line = w
		case ansi.StringWidth(line)+1+ansi.StringWidth(w) <= width:
			line += " " + w
		default:
			lines, line = append(lines, line), w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
