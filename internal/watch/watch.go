// Package watch shows CLOSE_WAIT over time: the samples of a
// history.Sampler (a snapshot every interval, reusing the previous one's
// owners, judged with growth over a sliding window, with short per-process
// trends) as NDJSON, plain lines or a full-screen terminal view.
package watch

import "github.com/closewait/closewait/internal/history"

// Tick is one sample as watch shows it.
type Tick = history.Tick
