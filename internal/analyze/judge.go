package analyze

import (
	"fmt"

	"github.com/closewait/closewait/internal/diagnose"
)

// queueCauses are the causes told apart by Recv-Q (0: read to EOF, 1: never
// read since the FIN), which some formats do not show.
var queueCauses = map[string]bool{
	"missing-close":     true,
	"abandoned-unread":  true,
	"pool-idle":         true,
	"normal-half-close": true,
}

// Judge runs the diagnosis on the input's snapshot, then drops the findings
// the input cannot support: without Recv-Q (lsof without -T qs) every socket
// would look read to EOF, so causes decided by Recv-Q are left out, and a
// notice says so.
func (res *Result) Judge(th diagnose.Thresholds, opt diagnose.Options) *diagnose.Report {
	r := diagnose.Analyze(res.Snapshot, th, opt)
	if res.queues {
		return r
	}
	dropped := 0
	for _, p := range r.Processes {
		kept := p.Findings[:0]
		for _, f := range p.Findings {
			if queueCauses[f.Cause] {
				dropped++
				continue
			}
			kept = append(kept, f)
		}
		p.Findings = kept
	}
	if dropped > 0 {
		res.Snapshot.Notices = append(res.Snapshot.Notices, fmt.Sprintf(
			"%d findings left out: %s shows no Recv-Q, which tells read-to-EOF (missing close) from never-read (abandoned, idle pool); save lsof -nP -iTCP -Tqs or ss -tanpi", dropped, res.Format))
	}
	return r
}
