package analyze

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// netstatTimer is netstat -o's last column: "keepalive (7186.11/0/0)".
var netstatTimer = regexp.MustCompile(`\s(off|on|keepalive|timewait|probe|unkn-\d+) \([^)]*\)\s*$`)

// parseNetstat reads netstat -ant[p][e][o][W] output.
func parseNetstat(lines *lineSource) (*parsed, error) {
	p := newParsed("netstat")
	var hasUser, hasPID, hasTimer, header bool
	rows := 0
	for ln, l := range lines.all() {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "Active":
			if strings.Contains(l, "UNIX") || strings.Contains(l, "Bluetooth") {
				return p.netstatDone(rows, ln, hasPID, hasTimer)
			}
			continue
		case f[0] == "Proto":
			header = true
			hasUser = strings.Contains(l, "Inode")
			hasPID = strings.Contains(l, "PID/Program")
			hasTimer = strings.Contains(l, "Timer")
			continue
		case strings.HasPrefix(l, "(") || strings.Contains(l, "would have to be root"):
			continue // "(Not all processes could be identified, ...)"
		case f[0] == "udp" || f[0] == "udp6" || f[0] == "raw" || f[0] == "raw6" || f[0] == "udpl" || f[0] == "unix":
			continue
		case f[0] != "tcp" && f[0] != "tcp6":
			return nil, &LineError{"netstat", ln, fmt.Errorf("%q is not a netstat connection line (Proto Recv-Q Send-Q Local Foreign State ...)", truncate(l))}
		}
		if len(f) < 6 {
			return nil, &LineError{"netstat", ln, fmt.Errorf("the line has %d columns, expected at least 6 (Proto Recv-Q Send-Q Local Foreign State)", len(f))}
		}
		rest := strings.TrimSpace(strings.Join(f[6:], " "))
		if !header {
			// No header: guess the columns from the line.
			hasTimer = netstatTimer.MatchString(" " + rest)
			hasUser = len(f) >= 9 && isUint(f[7])
			hasPID = len(f) >= 7 && (f[len(f)-1] == "-" || strings.Contains(rest, "/"))
		}
		s := snapshot.Socket{}
		rq, ok1 := parseUint(f[1], 32)
		sq, ok2 := parseUint(f[2], 32)
		if !ok1 || !ok2 {
			return nil, &LineError{"netstat", ln, fmt.Errorf("Recv-Q %q and Send-Q %q must be numbers", f[1], f[2])}
		}
		s.RecvQ, s.SendQ = uint32(rq), uint32(sq)
		fam := 4
		if f[0] == "tcp6" {
			fam = 6
		}
		var err error
		if s.Local, err = parseEndpoint(f[3], fam); err != nil {
			return nil, &LineError{"netstat", ln, fmt.Errorf("local address: %w", err)}
		}
		if s.Remote, err = parseEndpoint(f[4], fam); err != nil {
			return nil, &LineError{"netstat", ln, fmt.Errorf("foreign address: %w", err)}
		}
		s.Family = 2
		if fam == 6 {
			s.Family = 10
		}
		if s.State, err = sockdiag.ParseState(f[5]); err != nil {
			return nil, &LineError{"netstat", ln, err}
		}
		if hasTimer {
			if m := netstatTimer.FindStringSubmatch(" " + rest); m != nil {
				if m[1] == "keepalive" {
					s.Timer = sockdiag.TimerKeepalive
				}
				rest = strings.TrimSpace(strings.TrimSuffix(" "+rest, m[0]))
			}
		}
		var user string
		if hasUser {
			uf := strings.Fields(rest)
			if len(uf) < 2 {
				return nil, &LineError{"netstat", ln, errors.New("expected User and Inode columns (netstat -e)")}
			}
			user = uf[0]
			ino, ok := parseUint(uf[1], 64)
			if !ok {
				return nil, &LineError{"netstat", ln, fmt.Errorf("inode %q is not a number", uf[1])}
			}
			s.Inode = ino
			if n, ok := parseUint(user, 32); ok {
				s.UID = uint32(n)
			}
			rest = strings.TrimSpace(strings.Join(uf[2:], " "))
		}
		if hasPID && rest != "-" && rest != "" {
			pidS, comm, ok := strings.Cut(rest, "/")
			pid, okp := parseUint(pidS, 31)
			if !ok || !okp || pid == 0 {
				return nil, &LineError{"netstat", ln, fmt.Errorf("%q is not PID/Program name", truncate(rest))}
			}
			p.owner(int(pid), comm, user)
			s.Owners = []procscan.Owner{{PID: int(pid), FD: -1}}
		}
		s.Info.State = uint8(s.State)
		p.add(s)
		rows++
	}
	return p.netstatDone(rows, lines.lastLine(), hasPID, hasTimer)
}

func (p *parsed) netstatDone(rows, line int, hasPID, hasTimer bool) (*parsed, error) {
	if rows == 0 {
		return nil, &LineError{"netstat", line, errors.New("no tcp connection lines")}
	}
	p.queues, p.owners, p.timers = true, hasPID, hasTimer
	p.inodes = false // netstat -e prints inode 0 for sockets with no fd, but its PID column is what tells
	p.format = "netstat -ant"
	if hasPID {
		p.format += "p"
		p.notices = append(p.notices, "netstat names one process per socket and no fd: a socket shared by several processes shows under one of them")
	}
	if hasTimer {
		p.format += "o"
	}
	return p, nil
}
