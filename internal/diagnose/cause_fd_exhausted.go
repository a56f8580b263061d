package diagnose

import (
	"fmt"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
)

// CauseFDExhausted: the process's fd table is full, so it cannot accept
// the connections waiting in its listener's queue.
const CauseFDExhausted = "fd-exhausted"

// fdsFull reports whether a process is at or near its fd limit: at most
// 2% (at least 2) of the soft limit left.
func fdsFull(p *ProcessReport) bool {
	pr := p.Process
	if pr == nil || pr.FDSoft == 0 || pr.FDSoft == procscan.Unlimited {
		return false
	}
	free := int64(pr.FDSoft) - int64(pr.OpenFDs)
	return free <= max(2, int64(pr.FDSoft)/50)
}

// nrOpen is the kernel's default ceiling for an fd limit (fs.nr_open).
const nrOpen = 1 << 20

// raisedLimit is the fd limit to advise for a process at its limit: the
// hard limit when it is higher (no privilege needed), else four times the
// soft limit (at least 1024, at most fs.nr_open's default; needs root).
func raisedLimit(pr *procscan.Process) (n uint64, needsRoot bool) {
	if pr.FDHard > pr.FDSoft && pr.FDHard != procscan.Unlimited && pr.FDHard <= nrOpen {
		return pr.FDHard, false
	}
	return min(max(pr.FDSoft*4, 1024), nrOpen), true
}

var _ = register(&Cause{
	ID:    CauseFDExhausted,
	Title: "at its fd limit: connections wait in the accept queue",
	Help: "The process is at or near its fd limit (RLIMIT_NOFILE), so `accept()` fails with EMFILE (\"too many open files\") and new connections wait in its listener's queue until their clients give up and they turn CLOSE_WAIT there, with no fd. " +
		"It replaces not-accepted for such a process: the accept loop is not slow, it cannot get an fd. " +
		"Relief first: `prlimit --pid PID --nofile=N:N` raises the limit of the running process (`LimitNOFILE=` in a systemd unit for the next start); `closewait destroy` frees the queued sockets' kernel memory but no fd. " +
		"Then fix the leak that filled the fd table: the process's other findings.",
	rank:     5,
	replaces: CauseNotAccepted,
	applies:  fdsFull,
	evidence: func(v *partView) []string {
		pr := v.p.Process
		out := []string{
			fmt.Sprintf("%s %s in the accept queue: the process cannot accept them", v.of, v.wait),
			fmt.Sprintf("%d fds open of a limit of %d (%d free): accept() fails with EMFILE (\"too many open files\"), so new connections wait until their clients give up",
				pr.OpenFDs, pr.FDSoft, max(int64(pr.FDSoft)-int64(pr.OpenFDs), 0)),
		}
		return append(out, v.listeners...)
	},
	noStackSteps: true,
	steps: func(q *adviceQuery) []string {
		pr := q.p.Process
		n, root := raisedLimit(pr)
		raise := fmt.Sprintf("prlimit --pid %d --nofile=%d:%d   # raises the fd limit of the running process now", q.p.PID, n, n)
		if root {
			raise = "sudo " + strings.TrimSuffix(raise, " now") + " now (above its hard limit: needs root)"
		}
		out := []string{raise}
		if unit := systemdUnit(pr.Cgroup); unit != "" {
			out = append(out, fmt.Sprintf("systemctl edit %s   # add LimitNOFILE=%d under [Service]: the limit for its next start", unit, n))
		} else {
			out = append(out, fmt.Sprintf("for the next start: LimitNOFILE=%d in its systemd unit, ulimit -n %d in its start script, or --ulimit nofile=%d:%d for a container", n, n, n, n))
		}
		out = append(out,
			"closewait destroy frees the kernel memory of sockets, not fds: it does not bring the process back under its limit",
			"then fix the leak that filled the fd table: the process's other findings (the sockets it did accept)",
			fmt.Sprintf("ls -l /proc/%d/fd | awk '{print $NF}' | sed 's/:.*//' | sort | uniq -c | sort -rn | head   # what the fds are", q.p.PID))
		return out
	},
	fix: func(q *adviceQuery) []string {
		return []string{"size the fd limit for the load (LimitNOFILE=, ulimit -n) and fix the leak that uses the fds: an fd limit reached by CLOSE_WAIT sockets only grows back when they are closed"}
	},
})

// systemdUnit is the systemd service of a cgroup path ("…/nginx.service" →
// "nginx.service"), or "".
func systemdUnit(cgroup string) string {
	for _, part := range strings.Split(cgroup, "/") {
		if strings.HasSuffix(part, ".service") {
			return part
		}
	}
	return ""
}
