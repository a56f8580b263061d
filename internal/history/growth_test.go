package history

import (
	"testing"
	"time"
)

type testPoint struct {
	t time.Time
	n int
}

func TestGrowthOver(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	series := func(pts ...int) []testPoint { // seconds, count, seconds, count ...
		var out []testPoint
		for i := 0; i+1 < len(pts); i += 2 {
			out = append(out, testPoint{at(pts[i]), pts[i+1]})
		}
		return out
	}
	tests := []struct {
		name     string
		pts      []testPoint
		window   time.Duration
		ok       bool
		from, to int // seconds
		perMin   float64
	}{
		{"empty", nil, time.Minute, false, 0, 0, 0},
		{"one point", series(0, 10), time.Minute, false, 0, 0, 0},
		{"same time", series(0, 10, 0, 20), time.Minute, false, 0, 0, 0},
		{"shorter than the window: from the oldest", series(0, 10, 15, 20, 30, 40), time.Minute, true, 0, 30, 60},
		{"exactly one window", series(0, 10, 30, 20, 60, 70), time.Minute, true, 0, 60, 60},
		{"longer: the newest point a window back", series(0, 0, 15, 100, 30, 100, 75, 130, 90, 160), time.Minute, true, 30, 90, 60},
		{"shrinking", series(0, 100, 120, 40), time.Minute, true, 0, 120, -30},
		{"gap larger than the window", series(0, 5, 600, 5, 601, 6), time.Minute, true, 0, 601, 60.0 / 601},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, ok := GrowthOver(tt.pts, tt.window, func(p testPoint) (time.Time, int) { return p.t, p.n })
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tt.ok, g)
			}
			if !ok {
				return
			}
			if !g.From.Equal(at(tt.from)) || !g.To.Equal(at(tt.to)) {
				t.Errorf("span %v..%v, want %ds..%ds", g.From.Sub(t0), g.To.Sub(t0), tt.from, tt.to)
			}
			if d := g.PerMin - tt.perMin; d > 1e-9 || d < -1e-9 {
				t.Errorf("PerMin = %v, want %v", g.PerMin, tt.perMin)
			}
			if g.Delta() != g.After-g.Before || g.Span() != g.To.Sub(g.From) {
				t.Errorf("Delta %d / Span %v inconsistent with %+v", g.Delta(), g.Span(), g)
			}
		})
	}
}

func TestPerMinute(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		before, after int
		d             time.Duration
		want          float64
		ok            bool
	}{
		{100, 130, 30 * time.Second, 60, true},
		{100, 70, 2 * time.Minute, -15, true},
		{5, 5, time.Hour, 0, true},
		{1, 2, 0, 0, false},
		{1, 2, -time.Second, 0, false},
	}
	for _, tt := range tests {
		got, ok := PerMinute(tt.before, tt.after, t0, t0.Add(tt.d))
		if ok != tt.ok || got != tt.want {
			t.Errorf("PerMinute(%d, %d, %v) = %v, %v; want %v, %v", tt.before, tt.after, tt.d, got, ok, tt.want, tt.ok)
		}
	}
}
