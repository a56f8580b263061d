package leakcheck

import (
	"context"
	"log/slog"
	"time"
)

// Watch checks the tracked connections every interval until ctx is done.
// After every check that finds connections in CLOSE_WAIT it calls
// [Options.OnLeak], and when the number of leaked connections has grown
// since the previous check it logs one warning to [Options.Logger] naming
// the largest group. Run it on its own goroutine:
//
//	go tr.Watch(ctx, time.Minute)
func (t *Tracker) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prev := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rep := t.Report()
		if rep.CloseWait > 0 && t.opts.OnLeak != nil {
			t.opts.OnLeak(rep)
		}
		if rep.CloseWait > prev && t.opts.Logger != nil {
			g := rep.Groups[0]
			t.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "connections leaked in CLOSE_WAIT",
				slog.Int("close_wait", rep.CloseWait),
				slog.Int("tracked", rep.Tracked),
				slog.Int("groups", len(rep.Groups)),
				slog.String("top_site", g.Site),
				slog.String("top_origin", g.Origin),
				slog.Int("top_count", g.Count),
				slog.Duration("top_oldest_close_wait", g.OldestCloseWait),
			)
		}
		prev = rep.CloseWait
	}
}
