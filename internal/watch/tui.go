package watch

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/closewait/closewait/internal/diagnose"
)

// MinWidth is the narrowest terminal the live view draws in.
const MinWidth = 40

// UIOptions shape the live view.
type UIOptions struct {
	Interval time.Duration
	// ASCII draws trends and marks with ASCII only (for terminals or fonts
	// without the block characters).
	ASCII bool
}

// TickMsg hands a new tick to the live view.
type TickMsg struct{ Tick *Tick }

// ErrMsg hands the live view an error of the sampler; it is shown in the
// header and the view goes on.
type ErrMsg struct{ Err error }

// Sort columns, in the order `s` cycles through them.
const (
	sortCW = iota
	sortGrowth
	sortOldest
	sortFD
	sortPID
	sortCommand
	sortStatus
	numSorts
)

var sortNames = [numSorts]string{"CW", "Δ/MIN", "OLDEST", "FD USE", "PID", "COMMAND", "STATUS"}

// Model is the live view (a Bubble Tea model). Create it with NewModel.
type Model struct {
	opt           UIOptions
	width, height int

	shown  *Tick // the tick on screen
	latest *Tick // the newest tick (differs from shown while paused)
	err    error

	paused      bool
	sortBy      int
	reverse     bool
	filter      string
	editing     bool // typing a filter
	input       string
	problems    bool // only processes that are not ok
	cmdlines    bool // the COMMAND column shows command lines
	help        bool
	selectedPID int
	expandedPID int
	offset      int // first body line on screen

	rows []*diagnose.ProcessReport // shown rows, filtered and sorted

	// Interrupted is set when the view was left with Ctrl-C (exit 130).
	Interrupted bool
}

// NewModel returns the live view.
func NewModel(opt UIOptions) *Model {
	return &Model{opt: opt, width: 80, height: 24}
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case TickMsg:
		m.latest = msg.Tick
		m.err = nil
		if !m.paused || m.shown == nil {
			m.shown = msg.Tick
			m.refresh()
		}
	case ErrMsg:
		m.err = msg.Err
	case tea.KeyPressMsg:
		return m, m.key(msg)
	}
	return m, nil
}

func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	s := k.String()
	if s == "ctrl+c" {
		m.Interrupted = true
		return tea.Quit
	}
	if m.editing {
		switch s {
		case "enter":
			m.editing = false
			m.filter = strings.TrimSpace(m.input)
		case "esc":
			m.editing, m.input, m.filter = false, "", ""
		case "backspace":
			if r := []rune(m.input); len(r) > 0 {
				m.input = string(r[:len(r)-1])
			}
		default:
			if k.Text != "" {
				m.input += k.Text
			}
		}
		if m.editing {
			m.filter = strings.TrimSpace(m.input) // incremental
		}
		m.refresh()
		return nil
	}
	if m.help {
		m.help = false
		if s == "q" {
			return tea.Quit
		}
		return nil
	}
	switch s {
	case "q":
		return tea.Quit
	case "?":
		m.help = true
	case "up", "k":
		m.move(-1)
	case "down", "j":
		m.move(1)
	case "pgup":
		m.move(-max(m.bodyHeight()-1, 1))
	case "pgdown":
		m.move(max(m.bodyHeight()-1, 1))
	case "home", "g":
		m.move(-len(m.rows))
	case "end", "G":
		m.move(len(m.rows))
	case "enter", "right", "l":
		if m.expandedPID == m.selectedPID && s == "enter" {
			m.expandedPID = 0
		} else {
			m.expandedPID = m.selectedPID
		}
	case "esc", "left", "h":
		switch {
		case m.expandedPID != 0:
			m.expandedPID = 0
		case m.filter != "" && s == "esc":
			m.filter, m.input = "", ""
			m.refresh()
		}
	case "/":
		m.editing, m.input = true, m.filter
	case "s", ">":
		m.sortBy = (m.sortBy + 1) % numSorts
		m.refresh()
	case "<":
		m.sortBy = (m.sortBy + numSorts - 1) % numSorts
		m.refresh()
	case "r":
		m.reverse = !m.reverse
		m.refresh()
	case "1", "2", "3", "4", "5", "6", "7":
		m.sortBy = int(s[0] - '1')
		m.refresh()
	case "p", "space":
		m.paused = !m.paused
		if !m.paused && m.latest != nil {
			m.shown = m.latest
			m.refresh()
		}
	case "a":
		m.problems = !m.problems
		m.refresh()
	case "c":
		m.cmdlines = !m.cmdlines
	}
	m.scrollToSelection()
	return nil
}

// move moves the selection by n rows, keeping it on screen.
func (m *Model) move(n int) {
	if len(m.rows) == 0 {
		return
	}
	i := m.selectedIndex() + n
	i = max(0, min(i, len(m.rows)-1))
	m.selectedPID = m.rows[i].PID
}

func (m *Model) selectedIndex() int {
	for i, p := range m.rows {
		if p.PID == m.selectedPID {
			return i
		}
	}
	return 0
}

// refresh recomputes the rows after a new tick, sort or filter; the
// selection follows its process.
func (m *Model) refresh() {
	m.rows = m.rows[:0]
	if m.shown == nil {
		return
	}
	f := strings.ToLower(m.filter)
	for _, p := range m.shown.Report.Processes {
		if m.problems && p.Status == diagnose.OK {
			continue
		}
		if f != "" && !matches(p, f) {
			continue
		}
		m.rows = append(m.rows, p)
	}
	slices.SortStableFunc(m.rows, func(a, b *diagnose.ProcessReport) int {
		c := compareBy(m.sortBy, a, b)
		if m.reverse {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.PID, b.PID))
	})
	found := false
	for _, p := range m.rows {
		found = found || p.PID == m.selectedPID
	}
	if !found && len(m.rows) > 0 {
		m.selectedPID = m.rows[0].PID
	}
	if m.expandedPID != 0 && !slices.ContainsFunc(m.rows, func(p *diagnose.ProcessReport) bool { return p.PID == m.expandedPID }) {
		m.expandedPID = 0
	}
	m.scrollToSelection()
}

// compareBy orders two processes by a column: numbers largest first,
// names alphabetically.
func compareBy(col int, a, b *diagnose.ProcessReport) int {
	switch col {
	case sortGrowth:
		return cmp.Compare(growth(b), growth(a))
	case sortOldest:
		return cmp.Compare(b.Oldest, a.Oldest)
	case sortFD:
		return cmp.Compare(b.FDShare(), a.FDShare())
	case sortPID:
		return cmp.Compare(a.PID, b.PID)
	case sortCommand:
		return cmp.Compare(comm(a), comm(b))
	case sortStatus:
		return cmp.Or(cmp.Compare(b.Status, a.Status), cmp.Compare(b.CloseWait, a.CloseWait))
	}
	return cmp.Compare(b.CloseWait, a.CloseWait)
}

func growth(p *diagnose.ProcessReport) float64 {
	if p.Growth == nil {
		return 0
	}
	return p.Growth.NetPerMin
}

// cmdline is the process's command line, or its command name when the
// command line is empty (a kernel thread, a zombie) or unknown.
func cmdline(p *diagnose.ProcessReport) string {
	if p.Process != nil && p.Process.Cmdline != "" {
		return p.Process.Cmdline
	}
	return comm(p)
}

func comm(p *diagnose.ProcessReport) string {
	if p.Process == nil {
		return "?"
	}
	return p.Process.Comm
}

// matches reports whether a process matches a filter (lower case): its pid,
// a port of one of its sockets, or a substring of its command, command
// line, user, container, or a remote address.
func matches(p *diagnose.ProcessReport, f string) bool {
	if n, err := strconv.Atoi(f); err == nil {
		if n == p.PID {
			return true
		}
		if n > 0 && n < 65536 {
			for _, s := range p.Sockets {
				if int(s.Local.Port()) == n || int(s.Remote.Port()) == n {
					return true
				}
			}
		}
		return false
	}
	if pr := p.Process; pr != nil {
		for _, v := range []string{pr.Comm, pr.Cmdline, pr.User, pr.Container.ID} {
			if v != "" && strings.Contains(strings.ToLower(v), f) {
				return true
			}
		}
	}
	for _, s := range p.Sockets {
		if strings.Contains(strings.ToLower(s.Remote.String()), f) {
			return true
		}
	}
	return false
}
