package leakcheck

import (
	"sync/atomic"
	"time"
	"weak"
)

// clockTick is the resolution of the last-read and last-write times.
const clockTick = 50 * time.Millisecond

// coarseClock is a clock read with one atomic load, advanced by a
// goroutine every clockTick. Reads and writes record their time with it:
// time.Now costs from 20 ns to a few hundred (on virtual machines without
// a fast clock source), four times per HTTP exchange.
type coarseClock struct{ now atomic.Int64 }

// startClock starts t's clock goroutine. It holds t weakly and exits once t
// has been collected.
func startClock(t *Tracker) {
	c := &coarseClock{}
	c.now.Store(time.Now().UnixNano())
	t.clock = c
	wt := weak.Make(t)
	go func() {
		tick := time.NewTicker(clockTick)
		defer tick.Stop()
		for now := range tick.C {
			if wt.Value() == nil {
				return
			}
			c.now.Store(now.UnixNano())
		}
	}()
}

func (c *coarseClock) nano() int64 { return c.now.Load() }
