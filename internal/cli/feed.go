package cli

import (
	"fmt"
	"time"

	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockevents"
)

// FeedFlag chooses how the long-running commands learn of CLOSE_WAIT
// sockets between full dumps.
type FeedFlag struct {
	Feed string `default:"auto" enum:"auto,ebpf,off" help:"How to follow CLOSE_WAIT sockets between full checks: ebpf (a program on the kernel's TCP state-change tracepoint queues every socket entering or leaving CLOSE_WAIT, so each interval dumps only the other states: needs Linux ≥ 5.8 with BTF and CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN), off (dump every CLOSE_WAIT socket each interval), or auto (ebpf where permitted, else off)."`
}

// changeFeed opens the eBPF change feed --feed asks for, once, with a ring
// sized for a drain every interval, or returns nil (full dumps). A load
// error falls back to full dumps: silently (one line with -v) under auto,
// with a note on stderr under --feed ebpf.
func (g *Globals) changeFeed(mode string, interval time.Duration) snapshot.Changes {
	if mode == "off" {
		return nil
	}
	if g.feed == nil {
		f, err := sockevents.OpenRing(sockevents.RingFor(interval))
		if err != nil {
			g.noteEBPFFallback("feed", mode, "full dumps", "dumping every CLOSE_WAIT socket each interval", oneLine(err))
			return nil
		}
		if g.Verbose {
			fmt.Fprintln(g.stderr, "closewait: feed: eBPF inet_sock_set_state tracepoint")
		}
		g.feed = f
	}
	return g.feed
}

// closeFeed detaches the change feed, if one was opened.
func (g *Globals) closeFeed() {
	if g.feed != nil {
		g.feed.Close()
		g.feed = nil
	}
}
