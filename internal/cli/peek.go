package cli

import (
	"fmt"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/peek"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// peekFindings reads, without consuming it, the unread data of one socket
// of each of p's findings whose sockets hold data (Recv-Q > 1: data and
// the FIN), by finding index. Findings of sockets read to EOF, waiting in
// an accept queue (no fd) or of the whole process are left out. Each
// group of sockets (a listening port or a remote) is peeked once.
func peekFindings(p *diagnose.ProcessReport) map[int]report.Peek {
	out := map[int]report.Peek{}
	named := map[string]bool{} // the ports and remotes of findings of their own
	for _, f := range p.Findings {
		if f.LocalPort != 0 || f.Remote != "" {
			named[groupOf(f.Direction, f.LocalPort, f.Remote)] = true
		}
	}
	used := map[string]bool{}
	// Findings of one port or remote first, then the merged "other" ones.
	for _, merged := range []bool{false, true} {
		for i, f := range p.Findings {
			if merged != (f.LocalPort == 0 && f.Remote == "") {
				continue
			}
			switch f.Cause {
			case diagnose.CauseMissingClose, diagnose.CauseNotAccepted, diagnose.CauseGrowing:
				continue // nothing unread, no fd, or not a group of sockets
			}
			for _, s := range p.Sockets {
				fd := ownFD(s, p.PID)
				g := socketGroup(s)
				if fd < 0 || s.State != sockdiag.CloseWait || s.RecvQ <= 1 || used[g] || !inFinding(f, s, g, named) {
					continue
				}
				used[g] = true
				data, err := peek.Unread(p.PID, fd, s.Inode, peek.MaxText+1)
				out[i] = report.Peek{Socket: fmt.Sprintf("%s->%s", s.Local, s.Remote), Unread: int(s.RecvQ) - 1, Data: data, Err: err}
				break
			}
		}
	}
	return out
}

// ownFD is the fd by which process pid holds s, or -1.
func ownFD(s *snapshot.Socket, pid int) int {
	for _, o := range s.Owners {
		if o.PID == pid && o.FD >= 0 && !s.NotAccepted {
			return o.FD
		}
	}
	return -1
}

// socketGroup is the group a socket falls in: its listening port (inbound)
// or its remote (outbound), as findings name them.
func socketGroup(s *snapshot.Socket) string {
	if s.Inbound() {
		return groupOf("inbound", s.Local.Port(), "")
	}
	return groupOf("outbound", 0, s.Remote.String())
}

func groupOf(direction string, port uint16, remote string) string {
	return fmt.Sprintf("%s %d %s", direction, port, remote)
}

// inFinding reports whether socket s, of group g, is one that finding f
// describes: same port or remote, or for a merged finding ("on 3 other
// ports") the same direction and no finding of its own.
func inFinding(f diagnose.Finding, s *snapshot.Socket, g string, named map[string]bool) bool {
	if f.LocalPort != 0 || f.Remote != "" {
		return g == groupOf(f.Direction, f.LocalPort, f.Remote)
	}
	dir := "outbound"
	if s.Inbound() {
		dir = "inbound"
	}
	return dir == f.Direction && !named[g]
}
