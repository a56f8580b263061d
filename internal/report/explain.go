package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
)

// CauseTitle is a cause id in words ("read to EOF and never closed"), from
// the cause registry.
func CauseTitle(cause string) string { return diagnose.CauseTitle(cause) }

// ExplainOptions shape the explain narrative.
type ExplainOptions struct {
	Color bool // ANSI colour for the status word
	// Snapshot time, for "since" clock times; zero leaves them out.
	Now time.Time
	// Peeks are the unread bytes of findings, by index (explain --peek).
	Peeks map[int]Peek
}

// WriteExplain writes the narrative for one process, in the shape of
// kubectl describe: aligned "Key: value" lines, then the findings, each
// with its evidence, an ss check, the next commands and the fix.
func WriteExplain(w io.Writer, p *diagnose.ProcessReport, opt ExplainOptions) error {
	bw := bufio.NewWriter(w)
	kv := func(k, format string, args ...any) {
		fmt.Fprintf(bw, "%-13s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	pr := p.Process
	if pr == nil {
		pr = &procscan.Process{PID: p.PID, Comm: "?"}
	}
	kv("Process", "%d %s", p.PID, pr.Comm)
	if pr.Cmdline != "" {
		kv("Command", "%s", pr.Cmdline)
	}
	if pr.User != "" {
		kv("User", "%s (uid %d)", pr.User, pr.UID)
	}
	rt := p.Runtime
	if p.RuntimeEvidence != "" {
		rt += " (" + p.RuntimeEvidence + ")"
	}
	kv("Runtime", "%s", rt)
	switch {
	case pr.Container.ID != "":
		kv("Container", "%s %s", pr.Container.Runtime, shortID(pr.Container.ID))
	case pr.Cgroup != "":
		kv("Cgroup", "%s", pr.Cgroup)
	}
	kv("Status", "%s", statusWord(p.Status, opt.Color, true))
	for _, why := range p.Reasons {
		fmt.Fprintf(bw, "  ! %s\n", why)
	}

	// What is leaking and since when.
	cw := fmt.Sprintf("%s socket%s", Thousands(p.CloseWait), plural(p.CloseWait))
	if p.NotAccepted > 0 {
		cw += fmt.Sprintf(" (%d never accepted)", p.NotAccepted)
	}
	if p.HasAge {
		cw += ", oldest ~" + diagnose.FormatAge(p.Oldest)
		if !opt.Now.IsZero() {
			cw += " (since about " + opt.Now.Add(-p.Oldest).UTC().Format("2006-01-02 15:04:05 UTC") + ")"
		}
	}
	kv("CLOSE_WAIT", "%s", cw)
	if p.Process != nil {
		fd := fdText(pr.OpenFDs, pr.FDSoft)
		if pr.FDSoft != 0 && pr.FDSoft != procscan.Unlimited {
			fd = fmt.Sprintf("%s open of %s (%.0f%%), %s free before EMFILE", Thousands(pr.OpenFDs), Thousands(int(pr.FDSoft)), pr.FDUsage()*100,
				Thousands(max(int(pr.FDSoft)-pr.OpenFDs, 0)))
		}
		kv("FDs", "%s", fd)
	}
	if g := p.Growth; g != nil {
		s := fmt.Sprintf("+%d entered, -%d left in %s (%s/min in, %s/min out, net %+.1f/min)",
			g.Entered, g.Left, diagnose.FormatAge(g.Interval), rateText(g.EnteredPerMin), rateText(g.LeftPerMin), g.NetPerMin)
		switch {
		case g.HasETA:
			s += "; fd limit reached in about " + diagnose.FormatAge(g.ETA)
		case !g.Growing():
			s += "; not growing"
		}
		kv("Growth", "%s", s)
	} else {
		kv("Growth", "not measured (closewait explain %d --sample 10s compares two snapshots)", p.PID)
	}
	if p.Threads != nil {
		kv("Threads", "%s", p.Threads.String())
	}

	fmt.Fprintln(bw)
	if len(p.Findings) == 0 {
		fmt.Fprintln(bw, "Findings:     <none>")
	} else {
		fmt.Fprintln(bw, "Findings:")
	}
	seenSteps, seenFix := map[string]int{}, map[string]int{}
	for i, f := range p.Findings {
		fmt.Fprintf(bw, "  %d. %s: %s\n", i+1, f.Cause, CauseTitle(f.Cause))
		fmt.Fprintf(bw, "     %s\n", FindingFacts(f))
		block(bw, "Evidence", f.Evidence)
		pk, ok := opt.Peeks[i]
		writePeek(bw, pk, ok)
		if f.Check != "" {
			fmt.Fprintf(bw, "     Check:\n       %s\n", f.Check)
		}
		onceBlock(bw, "Next steps", f.NextSteps, seenSteps, i+1)
		onceBlock(bw, "Fix", f.Fix, seenFix, i+1)
	}
	fmt.Fprintf(bw, "\nAges (~) are estimates from tcp_info. More: closewait sockets --pid %d · closewait watch\n", p.PID)
	return bw.Flush()
}

// FindingFacts is the line under a finding's title in explain: where,
// how many, how old and, for pool-idle, the server's idle timeout.
func FindingFacts(f diagnose.Finding) string {
	s := fmt.Sprintf("%s · %s · oldest ~%s", where(f), SocketCount(f.Count), diagnose.FormatAge(time.Duration(f.Oldest*float64(time.Second))))
	if f.RemoteIdleTimeout > 0 {
		s += fmt.Sprintf(" · server idle timeout ~%.1f s", f.RemoteIdleTimeout)
	}
	return s
}

func block(bw *bufio.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(bw, "     %s:\n", title)
	for _, l := range lines {
		fmt.Fprintf(bw, "       %s\n", l)
	}
}

// onceBlock prints a block, or a reference to the finding that printed the
// same lines already.
func onceBlock(bw *bufio.Writer, title string, lines []string, seen map[string]int, n int) {
	if len(lines) == 0 {
		return
	}
	key := strings.Join(lines, "\n")
	if first, ok := seen[key]; ok {
		fmt.Fprintf(bw, "     %s: as in %d.\n", title, first)
		return
	}
	seen[key] = n
	block(bw, title, lines)
}

func where(f diagnose.Finding) string {
	switch {
	case f.Remote != "":
		return f.Direction + " to " + f.Remote
	case f.LocalPort != 0:
		return fmt.Sprintf("%s on port %d", f.Direction, f.LocalPort)
	}
	return f.Direction
}

// SocketCount writes a count of sockets with thousands separators: "1
// socket", "12,400 sockets".
func SocketCount(n int) string {
	return Thousands(n) + " socket" + plural(n)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func rateText(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
