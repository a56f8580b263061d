package history

import "time"

// PerMinute is closewait's one definition of growth: the change of a count
// from one moment to a later one, per minute. It is what PromQL gives for
// the same span with delta(gauge[span]) / span-in-minutes, or with
// (rate(entered_total[span]) - rate(left_total[span])) * 60 when the count
// is fed by entered and left counters. ok is false when to is not after from.
func PerMinute(before, after int, from, to time.Time) (perMin float64, ok bool) {
	d := to.Sub(from)
	if d <= 0 {
		return 0, false
	}
	return float64(after-before) / d.Minutes(), true
}

// Growth is a count's change between two moments.
type Growth struct {
	From, To      time.Time
	Before, After int
	// PerMin is PerMinute of the above.
	PerMin float64
}

// Span is the time growth was measured over.
func (g Growth) Span() time.Duration { return g.To.Sub(g.From) }

// Delta is the change of the count.
func (g Growth) Delta() int { return g.After - g.Before }

// Measure returns the growth from (from, before) to (to, after); ok is false
// when to is not after from.
func Measure(before, after int, from, to time.Time) (Growth, bool) {
	pm, ok := PerMinute(before, after, from, to)
	if !ok {
		return Growth{}, false
	}
	return Growth{From: from, To: to, Before: before, After: after, PerMin: pm}, true
}

// GrowthOver measures a series' growth over about its last window, the way
// a PromQL range of that window does: from the newest point back to the
// newest point at least window older than it, or to the oldest point while
// the series is shorter than the window. pts are oldest first; at gives a
// point's time and count. ok is false with fewer than two points or no time
// between them. Every Δ/min closewait shows (watch, the dashboard) comes
// from here or from PerMinute.
func GrowthOver[P any](pts []P, window time.Duration, at func(P) (time.Time, int)) (Growth, bool) {
	if len(pts) < 2 {
		return Growth{}, false
	}
	t1, n1 := at(pts[len(pts)-1])
	i := len(pts) - 2
	for ; i > 0; i-- {
		if t, _ := at(pts[i]); t1.Sub(t) >= window {
			break
		}
	}
	t0, n0 := at(pts[i])
	return Measure(n0, n1, t0, t1)
}
