package watch

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/report"
)

// JSONTick is one line of `closewait watch --json`: the report contract
// (version 1, with per-process growth_per_min and, when growing,
// fd_exhaustion_eta_seconds measured over the window) plus the tick's own
// fields.
type JSONTick struct {
	*report.JSONReport
	Tick            int     `json:"tick"`
	IntervalSeconds float64 `json:"interval_seconds"`
	// GrowthPerMin is the host's CLOSE_WAIT change per minute over
	// growth_span_seconds; absent on the first tick.
	GrowthPerMin      *float64 `json:"growth_per_min,omitempty"`
	GrowthSpanSeconds float64  `json:"growth_span_seconds"`
	TickSeconds       float64  `json:"tick_seconds"` // time to take and judge the snapshot
	HistoryError      string   `json:"history_error,omitempty"`
}

// BuildJSONTick converts a tick.
func BuildJSONTick(t *Tick, interval time.Duration) *JSONTick {
	jt := &JSONTick{
		JSONReport: report.BuildJSON(t.Report), Tick: t.N, IntervalSeconds: report.Seconds(interval),
		GrowthSpanSeconds: report.Seconds(t.Span), TickSeconds: report.Seconds(t.Took),
	}
	if t.Span > 0 {
		v := math.Round(t.GrowthPerMin*100) / 100
		jt.GrowthPerMin = &v
	}
	if t.RecordErr != nil {
		jt.HistoryError = t.RecordErr.Error()
	}
	return jt
}

// WriteJSON writes a tick as one line of JSON.
func WriteJSON(w io.Writer, t *Tick, interval time.Duration) error {
	b, err := json.Marshal(BuildJSONTick(t, interval))
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WritePlain writes a tick as logfmt lines: one for the host, then one per
// process holding CLOSE_WAIT sockets, worst first.
func WritePlain(w io.Writer, t *Tick) error {
	bw := bufio.NewWriter(w)
	r := t.Report
	ts := r.Snapshot.Time.UTC().Format(time.RFC3339)
	fmt.Fprintf(bw, "time=%s tick=%d close_wait=%d processes=%d unattributed=%d status=%s", ts, t.N, r.CloseWait, len(r.Processes), r.Unattributed.Count, r.Status)
	if t.Span > 0 {
		fmt.Fprintf(bw, " growth_per_min=%s", signed(t.GrowthPerMin))
	}
	fmt.Fprintf(bw, " took=%s\n", t.Took.Round(time.Millisecond))
	for _, p := range r.Processes {
		comm := "?"
		if p.Process != nil {
			comm = p.Process.Comm
		}
		fmt.Fprintf(bw, "time=%s pid=%d comm=%s close_wait=%d", ts, p.PID, logfmtValue(comm), p.CloseWait)
		if g := p.Growth; g != nil {
			fmt.Fprintf(bw, " growth_per_min=%s", signed(g.NetPerMin))
		}
		if p.HasAge {
			fmt.Fprintf(bw, " oldest=%s", diagnose.FormatAge(p.Oldest))
		}
		if pr := p.Process; pr != nil {
			fmt.Fprintf(bw, " fds=%d fd_limit=%s", pr.OpenFDs, limitText(pr.FDSoft))
			if share := p.FDShare(); share > 0 {
				fmt.Fprintf(bw, " fd_usage=%d%%", int(share*100+0.5))
			}
		}
		if g := p.Growth; g != nil && g.HasETA {
			fmt.Fprintf(bw, " fd_limit_in=%s", diagnose.FormatAge(g.ETA))
		}
		fmt.Fprintf(bw, " status=%s\n", p.Status)
	}
	if t.RecordErr != nil {
		fmt.Fprintf(bw, "time=%s history_error=%s\n", ts, logfmtValue(t.RecordErr.Error()))
	}
	return bw.Flush()
}

func limitText(v uint64) string {
	switch v {
	case 0:
		return "?"
	case procscan.Unlimited:
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// signed prints a rate with its sign: +12, -3, 0, +0.5.
func signed(v float64) string {
	v = math.Round(v*10) / 10
	if v == 0 {
		return "0"
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if math.Abs(v) >= 10 {
		s = strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	if v > 0 {
		return "+" + s
	}
	return s
}

func logfmtValue(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=\\\t\n") {
		return strconv.Quote(s)
	}
	return s
}
