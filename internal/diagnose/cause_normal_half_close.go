package diagnose

import "time"

// CauseNormalHalfClose: a few young sockets, most likely closing normally.
const CauseNormalHalfClose = "normal-half-close"

// Rule limits of the classification.
const (
	// NormalHalfCloseAge: sockets all younger than this may still be closing normally.
	NormalHalfCloseAge = 10 * time.Second
	// NormalHalfCloseMax: at most this many young sockets count as a normal half-close.
	NormalHalfCloseMax = 5
)

// normalCause is the normal-half-close cause, which findings name from ages.
var normalCause = register(&Cause{
	ID:    CauseNormalHalfClose,
	Title: "young and few: a normal half-close",
	Help: "Few sockets (at most 5 in one group), all younger than 10 seconds, and not growing: most likely connections that are closing normally and will be gone in a moment. " +
		"Nothing to do; look again in a minute, or take two snapshots with `--sample 10s`.",
	NeedsRecvQ:   true, // it names one of the Recv-Q causes as young
	rank:         90,
	noStackSteps: true,
	steps: func(*adviceQuery) []string {
		return []string{"nothing to do now; look again in a minute (or closewait --sample 10s): investigate only if they age or grow"}
	},
	fix: func(*adviceQuery) []string { return nil },
})
