package analyze

import (
	"fmt"

	"github.com/closewait/closewait/internal/diagnose"
)

// Judge runs the diagnosis on the input's snapshot, then drops the findings
// the input cannot support: without Recv-Q (lsof without -T qs) every socket
// would look read to EOF, so causes decided by Recv-Q are left out, and a
// notice says so.
func (res *Result) Judge(th diagnose.Thresholds, opt diagnose.Options) *diagnose.Report {
	r := diagnose.Analyze(res.Snapshot, th, opt)
	r.CloseWaitUnknown = res.CloseWaitUnknown()
	if res.queues {
		return r
	}
	dropped := 0
	for _, p := range r.Processes {
		kept := p.Findings[:0]
		for _, f := range p.Findings {
			if c := diagnose.LookupCause(f.Cause); c != nil && c.NeedsRecvQ {
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

// CloseWaitUnknown reports whether the input cannot count CLOSE_WAIT
// sockets (ss -s: its "estab" counts ESTABLISHED and CLOSE_WAIT together).
func (res *Result) CloseWaitUnknown() bool { return res.summary }
