package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
)

// JSONVersion is the version of the `closewait check --json` document.
const JSONVersion = 1

// JSONCheck is the `closewait check --json` document. Fields may be added; none are renamed.
type JSONCheck struct {
	Version   int           `json:"version"`
	Time      string        `json:"time"`
	Host      string        `json:"host"`
	Status    string        `json:"status"`
	CloseWait int           `json:"close_wait"`
	Keepalive int           `json:"keepalive_sockets"`
	Processes []JSONHolder  `json:"processes"`
	Settings  []JSONSetting `json:"settings"`
	Summary   []string      `json:"summary"`
	Notices   []string      `json:"notices"`
}

// JSONHolder is one process holding CLOSE_WAIT sockets.
type JSONHolder struct {
	PID         int      `json:"pid"`
	Comm        string   `json:"comm"`
	Cmdline     string   `json:"cmdline"`
	CloseWait   int      `json:"close_wait"`
	Keepalive   int      `json:"keepalive_sockets"`
	OpenFDs     int      `json:"open_fds"`
	FDsUnknown  bool     `json:"open_fds_unknown,omitempty"`
	FDLimit     uint64   `json:"fd_limit"`
	FDLimitHard uint64   `json:"fd_limit_hard"`
	FDUsage     float64  `json:"fd_usage"`
	Status      string   `json:"status"`
	Advice      []string `json:"advice"`
}

// JSONSetting is one reviewed sysctl.
type JSONSetting struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	Matters     bool   `json:"matters"`
	Status      string `json:"status"`
	Explanation string `json:"explanation"`
}

// Meta is where and when the review was made.
type Meta struct {
	Host    string
	Time    time.Time
	Notices []string
}

// BuildJSON converts a review into the JSON document.
func BuildJSON(r *Result, m Meta) *JSONCheck {
	out := &JSONCheck{
		Version: JSONVersion, Time: m.Time.UTC().Format(time.RFC3339), Host: m.Host, Status: r.Status.String(),
		CloseWait: r.CloseWait, Keepalive: r.Keepalive, Processes: []JSONHolder{}, Settings: []JSONSetting{},
		Summary: append([]string{}, r.Summary...), Notices: append([]string{}, m.Notices...),
	}
	for _, h := range r.Holders {
		out.Processes = append(out.Processes, JSONHolder{
			PID: h.PID, Comm: h.Comm, Cmdline: h.Cmdline, CloseWait: h.CloseWait, Keepalive: h.Keepalive,
			OpenFDs: h.OpenFDs, FDsUnknown: h.FDsUnknown, FDLimit: h.FDSoft, FDLimitHard: h.FDHard, FDUsage: math.Round(h.Usage*10000) / 10000,
			Status: h.Status.String(), Advice: append([]string{}, h.Advice...),
		})
	}
	for _, s := range r.Settings {
		out.Settings = append(out.Settings, JSONSetting{Name: s.Name, Value: s.Value, Matters: s.Matters, Status: s.Status.String(), Explanation: s.Explanation})
	}
	return out
}

// WriteJSON writes the review as indented JSON.
func WriteJSON(w io.Writer, r *Result, m Meta) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(BuildJSON(r, m))
}

// WriteText writes the review for people: processes holding CLOSE_WAIT and
// their limits, then each setting with whether it matters and why.
func WriteText(w io.Writer, r *Result, m Meta) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "closewait check · %s · %s · %s\n", m.Host, m.Time.UTC().Format("2006-01-02 15:04:05 UTC"), strings.ToUpper(r.Status.String()))
	fmt.Fprintf(bw, "%s, %d with SO_KEEPALIVE set by their application.\n", diagnose.Count(r.CloseWait, "CLOSE_WAIT socket"), r.Keepalive)
	if len(r.Holders) > 0 {
		fmt.Fprintf(bw, "\nPROCESSES HOLDING CLOSE_WAIT\n%-8s  %7s  %6s  %5s  %-24s  %s\n", "STATUS", "PID", "CW", "KA", "FDS/SOFT/HARD", "COMMAND")
		for _, h := range r.Holders {
			open := fmt.Sprint(h.OpenFDs)
			if h.FDsUnknown {
				open = "?"
			}
			fds := fmt.Sprintf("%s/%s/%s", open, limit(h.FDSoft), limit(h.FDHard))
			if h.Usage > 0 {
				fds += fmt.Sprintf(" %d%%", int(h.Usage*100+0.5))
			}
			cmd := h.Cmdline
			if cmd == "" {
				cmd = "[" + h.Comm + "]"
			}
			fmt.Fprintf(bw, "%-8s  %7d  %6d  %5d  %-24s  %s\n", h.Status, h.PID, h.CloseWait, h.Keepalive, fds, cmd)
			advice := h.Advice
			if h.Status == diagnose.OK && h.Usage > 0 && len(advice) > 0 {
				advice = advice[1:] // the usage line says what the row shows
			}
			for _, a := range advice {
				fmt.Fprintf(bw, "    %s %s\n", mark(h.Status), a)
			}
		}
	}
	fmt.Fprintf(bw, "\nSETTINGS\n%-8s  %-30s  %-12s  %s\n", "STATUS", "SETTING", "VALUE", "MATTERS")
	for _, s := range r.Settings {
		matters := "no"
		if s.Matters {
			matters = "yes"
		}
		fmt.Fprintf(bw, "%-8s  %-30s  %-12s  %s\n    %s\n", s.Status, s.Name, s.Value, matters, s.Explanation)
	}
	fmt.Fprintln(bw)
	for _, s := range r.Summary {
		fmt.Fprintln(bw, s)
	}
	fmt.Fprintf(bw, "Exit status %d (%s).\n", r.Status.ExitCode(), r.Status)
	return bw.Flush()
}

func mark(s diagnose.Status) string {
	if s > diagnose.OK {
		return "!"
	}
	return "·"
}

func limit(n uint64) string {
	switch n {
	case 0:
		return "?"
	case procscan.Unlimited:
		return "unlimited"
	}
	return fmt.Sprint(n)
}
