package origins

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/symbolize"
)

// TextOptions shape the origins listing.
type TextOptions struct {
	// Traced are the pids that were traced, and Duration for how long.
	Traced   []int
	Duration time.Duration
	// MaxFrames bounds the frames printed per origin; 0 means 32 (a Go
	// net.Dial stack with its inlined calls is about 22 deep).
	MaxFrames int
	// Indent prefixes every line (explain nests the listing).
	Indent string
}

// WriteText prints where the CLOSE_WAIT sockets of a trace were made,
// worst first: per process and creation stack, the count, how many from
// the same stack closed properly, the oldest age and the cause, then the
// frames, innermost first, as "function file:line (module)" or
// "module+0xoffset" with a line saying what would name them.
func WriteText(w io.Writer, r *Report, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	in := opt.Indent
	maxFrames := opt.MaxFrames
	if maxFrames == 0 {
		maxFrames = 32
	}
	if opt.Duration > 0 {
		fmt.Fprintf(bw, "%sTraced %s for %s: %d recorded sockets still open", in, pidsText(opt.Traced), opt.Duration.Round(100*time.Millisecond), r.Recorded)
		if r.Dropped > 0 {
			fmt.Fprintf(bw, ", %d creations dropped (maps full)", r.Dropped)
		}
		fmt.Fprintln(bw, ".")
	}
	if len(r.Origins) == 0 {
		fmt.Fprintf(bw, "%sNo socket made while tracing is in CLOSE_WAIT now.\n", in)
		return bw.Flush()
	}
	for i, o := range r.Origins {
		fmt.Fprintln(bw)
		fmt.Fprintf(bw, "%s%d. %s (pid %d) %s: %s in CLOSE_WAIT, %s closed properly, oldest %s\n", in, i+1, o.Comm, o.PID, o.How,
			report.SocketCount(o.Count), report.Thousands(int(o.Closed)), diagnose.FormatAge(time.Duration(o.OldestAgeSeconds*float64(time.Second))))
		if o.Cause != "" {
			fmt.Fprintf(bw, "%s   cause: %s (%s)\n", in, o.Cause, report.CauseTitle(o.Cause))
		}
		for j, f := range o.Frames {
			if j == maxFrames {
				fmt.Fprintf(bw, "%s     ... %d more frames\n", in, len(o.Frames)-j)
				break
			}
			fmt.Fprintf(bw, "%s     %s\n", in, frameText(f))
		}
		if o.Hint != "" {
			fmt.Fprintf(bw, "%s   unnamed frames: %s\n", in, o.Hint)
		}
	}
	return bw.Flush()
}

// frameText is "function file:line (module)", or "module+0xoffset".
func frameText(f symbolize.Frame) string {
	if !f.Named() {
		return fmt.Sprintf("%s+%#x", filepath.Base(f.Module), f.Offset)
	}
	s := f.Function
	if f.File != "" {
		s += " " + f.File + ":" + fmt.Sprint(f.Line)
	}
	if f.Inlined {
		s += " (inlined)"
	}
	return s + " (" + filepath.Base(f.Module) + ")"
}

func pidsText(pids []int) string {
	if len(pids) == 1 {
		return fmt.Sprintf("process %d", pids[0])
	}
	parts := make([]string, 0, len(pids))
	for i, p := range pids {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(pids)-i))
			break
		}
		parts = append(parts, fmt.Sprint(p))
	}
	return fmt.Sprintf("%d processes (%s)", len(pids), strings.Join(parts, ", "))
}
