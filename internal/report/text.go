package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// TextOptions shape the human report.
type TextOptions struct {
	Width int  // truncate command lines to fit this many columns; 0: never truncate
	Color bool // ANSI colour for status words
}

// WriteText writes the one-shot report: summary of all TCP states, then the
// processes holding CLOSE_WAIT sockets, worst first, with their findings.
func WriteText(w io.Writer, r *diagnose.Report, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	snap := r.Snapshot
	live := snap.Live()
	from := ""
	if !live {
		from = " · from saved " + snap.Stats.Source + " output"
	}
	if r.CloseWaitUnknown {
		fmt.Fprintf(bw, "closewait · %s · %s%s · UNKNOWN\n", snap.Host, snap.Time.UTC().Format("2006-01-02 15:04:05 UTC"), from)
		fmt.Fprintf(bw, "TCP: estab %s (ESTABLISHED and CLOSE_WAIT together) · TIME_WAIT %s\n", Thousands(snap.States[sockdiag.Established]), Thousands(snap.States[sockdiag.TimeWait]))
		fmt.Fprintln(bw, "\nCLOSE_WAIT: unknown. ss -s cannot tell CLOSE_WAIT from ESTABLISHED; save ss -tanpi on the host instead. Exit status 3 (unknown).")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "closewait · %s · %s%s · %s\n", snap.Host, snap.Time.UTC().Format("2006-01-02 15:04:05 UTC"), from, statusWord(r.Status, opt.Color, true))
	total := 0
	for _, n := range snap.States {
		total += n
	}
	var parts []string
	for _, st := range sockdiag.States() {
		if n := snap.States[st]; n > 0 || st == sockdiag.CloseWait {
			parts = append(parts, fmt.Sprintf("%s %s", st, Thousands(n)))
		}
	}
	fmt.Fprintf(bw, "TCP sockets %s: %s\n", Thousands(total), strings.Join(parts, " · "))
	if r.Sample > 0 {
		fmt.Fprintf(bw, "Sampled twice %s apart (--sample); rates are per minute.\n", diagnose.FormatAge(r.Sample))
	}

	if len(r.Processes) == 0 && r.Unattributed.Count == 0 {
		fmt.Fprintln(bw, "\nNo process holds a CLOSE_WAIT socket.")
	}
	if len(r.Processes) > 0 {
		fmt.Fprintln(bw)
		pw, uw := 5, 4
		for _, p := range r.Processes {
			pw = max(pw, len(strconv.Itoa(p.PID)))
			if p.Process != nil {
				uw = max(uw, len(p.Process.User))
			}
		}
		head := fmt.Sprintf("%-8s  %*s  %-*s  %6s  %-19s  %7s  ", "STATUS", pw, "PID", uw, "USER", "CW", "FDS/LIMIT", "OLDEST~")
		fmt.Fprintf(bw, "%sCOMMAND\n", head)
		for _, p := range r.Processes {
			user, fds, cmd := "?", "?", fmt.Sprintf("[pid %d exited]", p.PID)
			if pr := p.Process; pr != nil {
				user, fds, cmd = pr.User, fdText(pr.OpenFDs, pr.FDSoft), pr.Cmdline
				if cmd == "" {
					cmd = "[" + pr.Comm + "]"
				}
			}
			age := "-"
			if p.HasAge {
				age = diagnose.FormatAge(p.Oldest)
			}
			if opt.Width > 0 {
				cmd = truncate(cmd, opt.Width-len(head))
			}
			fmt.Fprintf(bw, "%s  %*d  %-*s  %6d  %-19s  %7s  %s\n", statusPad(p.Status, opt.Color), pw, p.PID, uw, user, p.CloseWait, fds, age, cmd)
			if where := placeText(p, snap.NetNS); where != "" {
				fmt.Fprintf(bw, "    in %s\n", where)
			}
			for _, why := range p.Reasons {
				fmt.Fprintf(bw, "    ! %s\n", why)
			}
			if p.NotAccepted > 0 {
				fmt.Fprintf(bw, "    ! %d waiting in its accept queue (never accepted)\n", p.NotAccepted)
			}
			check := ""
			for _, f := range p.Findings {
				mark := "✗"
				if f.Cause == diagnose.CauseNormalHalfClose {
					mark = "·" // not a problem: said, not flagged
				}
				fmt.Fprintf(bw, "    %s %s\n", mark, FindingLine(f))
				if check == "" && f.Cause != diagnose.CauseNormalHalfClose {
					check = f.Check
				}
			}
			if g := p.Growth; g != nil && !g.Growing() {
				fmt.Fprintf(bw, "    ~ not growing: +%d in, -%d out in %s\n", g.Entered, g.Left, diagnose.FormatAge(g.Interval))
			}
			if check != "" {
				fmt.Fprintf(bw, "    Check: %s\n", check)
			}
		}
	}
	if u := r.Unattributed; u.Count > 0 {
		age := ""
		if u.HasAge {
			age = ", oldest " + diagnose.FormatAge(u.Oldest)
		}
		fmt.Fprintf(bw, "\n%s  %s with no owner found%s\n", statusPad(u.Status, opt.Color), diagnose.Count(u.Count, "CLOSE_WAIT socket"), age)
		if len(u.Groups) > 0 {
			fmt.Fprintf(bw, "  %-8s  %-18s  %-24s  %6s  %-17s  %7s\n", "STATUS", "USER", "WHERE", "CW", "CAUSE (RECV-Q)", "OLDEST~")
			shown := 0
			for i, g := range u.Groups {
				if i == 12 {
					break
				}
				oldest := "-"
				if g.HasAge {
					oldest = diagnose.FormatAge(g.Oldest)
				}
				fmt.Fprintf(bw, "  %s  %-18s  %-24s  %6d  %-17s  %7s\n", statusPad(g.Status, opt.Color),
					truncate(fmt.Sprintf("uid %d (%s)", g.UID, g.User), 18), truncate(g.Where(), 24), g.Count, g.Cause(), oldest)
				shown += g.Count
			}
			if shown < u.Count {
				fmt.Fprintf(bw, "  … and %s in smaller groups\n", diagnose.Count(u.Count-shown, "socket"))
			}
			if snap.Partial {
				fmt.Fprintf(bw, "  Owners unknown: %s.\n", diagnose.UnownedHint)
			}
		}
	}
	ages := "Ages (~) are estimates from tcp_info."
	switch {
	case snap.Stats.Source == "procnet":
		ages = "No ages: /proc/net/tcp has no tcp_info."
	case !live && !snap.HasAges():
		ages = "No ages: the input has no tcp_info (ss -i)."
	}
	if r.Selected {
		held := 0
		for _, p := range r.Processes {
			held += p.CloseWait
		}
		fmt.Fprintf(bw, "\n%d CLOSE_WAIT in the %d selected processes (%d on the host). %s Exit status %d (%s).\n",
			held, len(r.Processes), r.CloseWait, ages, r.Status.ExitCode(), r.Status)
	} else {
		fmt.Fprintf(bw, "\n%d CLOSE_WAIT in %d processes. %s Exit status %d (%s).\n",
			r.CloseWait, len(r.Processes), ages, r.Status.ExitCode(), r.Status)
	}
	if len(r.Processes) > 0 && live {
		fmt.Fprintf(bw, "More: closewait explain %d · closewait sockets --pid %d · closewait watch\n", r.Processes[0].PID, r.Processes[0].PID)
	}
	return bw.Flush()
}

// placeText says where a process runs when that is not plainly this host:
// its container (runtime, short id, pod) and the network namespaces of its
// sockets other than closewait's own (current).
func placeText(p *diagnose.ProcessReport, current uint64) string {
	var parts []string
	if pr := p.Process; pr != nil && pr.Container.ID != "" {
		c := pr.Container.Runtime + " container " + shortID(pr.Container.ID)
		if pr.Container.PodUID != "" {
			c += " (pod " + pr.Container.PodUID + ")"
		}
		parts = append(parts, strings.TrimSpace(c))
	}
	seen := map[uint64]bool{}
	for _, s := range p.Sockets {
		if s.NetNS != 0 && s.NetNS != current && !seen[s.NetNS] {
			seen[s.NetNS] = true
			parts = append(parts, fmt.Sprintf("netns net:[%d]", s.NetNS))
		}
	}
	return strings.Join(parts, " · ")
}

// FindingLine is a finding in one line: cause, where, how many, the first piece of evidence.
func FindingLine(f diagnose.Finding) string {
	where := f.Direction
	switch {
	case f.Remote != "":
		where += " to " + f.Remote
	case f.LocalPort != 0:
		where += " on port " + strconv.Itoa(int(f.LocalPort))
	}
	s := fmt.Sprintf("%s (%s): %s", f.Cause, where, diagnose.Count(f.Count, "socket"))
	if f.Oldest > 0 {
		s += ", oldest " + diagnose.FormatAge(time.Duration(f.Oldest*float64(time.Second)))
	}
	if len(f.Evidence) > 0 {
		s += ". " + f.Evidence[0]
	}
	return s
}

func fdText(open int, soft uint64) string {
	switch {
	case soft == 0 && open == 0:
		return "?"
	case soft == 0:
		return fmt.Sprintf("%d/?", open)
	case soft == ^uint64(0):
		return fmt.Sprintf("%d/unlimited", open)
	}
	return fmt.Sprintf("%d/%d %d%%", open, soft, int(float64(open)*100/float64(soft)+0.5))
}

func statusWord(s diagnose.Status, color, upper bool) string {
	w := s.String()
	if upper {
		w = strings.ToUpper(w)
	}
	if !color {
		return w
	}
	switch s {
	case diagnose.Critical:
		return "\x1b[1;31m" + w + "\x1b[0m"
	case diagnose.Warning:
		return "\x1b[33m" + w + "\x1b[0m"
	}
	return w
}

func statusPad(s diagnose.Status, color bool) string {
	return statusWord(s, color, false) + strings.Repeat(" ", 8-len(s.String()))
}

func truncate(s string, n int) string {
	if n < 10 {
		n = 10
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Thousands formats n with thousands separators: 1,284.
func Thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + Thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
