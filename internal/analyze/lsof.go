package analyze

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

type lsofKey struct {
	inode         uint64
	local, remote netip.AddrPort
}

// parseLsof reads lsof -nP -iTCP output (also with -sTCP:STATE, -T qs, -K).
// Each row is one fd of one process; rows with the same socket (DEVICE
// column, the inode) are one socket with several owners.
func parseLsof(lines *lineSource) (*parsed, error) {
	p := newParsed("lsof -nP -iTCP")
	index := map[lsofKey]int{} // into all
	var all []snapshot.Socket
	rows, queues := 0, 0
	for ln, l := range lines.all() {
		f := strings.Fields(l)
		if len(f) == 0 || (f[0] == "COMMAND" && ln <= 5) || strings.HasPrefix(l, "lsof: ") || strings.HasPrefix(strings.TrimSpace(l), "Output information") {
			continue
		}
		// COMMAND PID [TID TASKCMD] USER FD TYPE DEVICE SIZE/OFF NODE NAME
		k := -1
		for j := 7; j < len(f); j++ {
			if f[j] == "TCP" {
				k = j
				break
			}
		}
		if k < 0 {
			if len(f) >= 8 && (f[len(f)-1] == "protocol" || strings.HasPrefix(f[4], "sock") || f[4] == "unix" || strings.Contains(l, " UDP ")) {
				continue // not a TCP socket (lsof -i without TCP, "can't identify protocol")
			}
			return nil, &LineError{"lsof", ln, fmt.Errorf("%q is not an lsof TCP line (COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME)", truncate(l))}
		}
		if k+1 >= len(f) {
			return nil, &LineError{"lsof", ln, errors.New("no NAME after TCP")}
		}
		pid, ok := parseUint(f[1], 31)
		if !ok || pid == 0 {
			return nil, &LineError{"lsof", ln, fmt.Errorf("PID %q is not a process id", f[1])}
		}
		user, fdS, typ, dev := f[k-5], f[k-4], f[k-3], f[k-2]
		fd, ok := parseUint(strings.TrimRight(fdS, "urwWRLNtx "), 31)
		if !ok {
			return nil, &LineError{"lsof", ln, fmt.Errorf("FD %q is not an fd number", fdS)}
		}
		ino, ok := parseUint(dev, 64)
		if !ok {
			return nil, &LineError{"lsof", ln, fmt.Errorf("DEVICE %q is not a socket inode", dev)}
		}
		name := strings.Join(f[k+1:], " ")
		addrs, paren, _ := strings.Cut(name, " (")
		if !strings.HasSuffix(paren, ")") {
			return nil, &LineError{"lsof", ln, fmt.Errorf("no (STATE) after %q (lsof -T without s hides it: save lsof -nP -iTCP, or -Tqs)", addrs)}
		}
		s := snapshot.Socket{}
		fam := 4
		s.Family = 2
		if typ == "IPv6" {
			fam, s.Family = 6, 10
		}
		ls, rs, conn := strings.Cut(addrs, "->")
		var err error
		if s.Local, err = parseEndpoint(ls, fam); err != nil {
			return nil, &LineError{"lsof", ln, fmt.Errorf("local address: %w", err)}
		}
		if conn {
			if s.Remote, err = parseEndpoint(rs, fam); err != nil {
				return nil, &LineError{"lsof", ln, fmt.Errorf("remote address: %w", err)}
			}
		} else {
			s.Remote = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
			if fam == 6 {
				s.Remote = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
			}
		}
		st := ""
		for _, w := range strings.Fields(strings.TrimSuffix(paren, ")")) {
			key, v, kv := strings.Cut(w, "=")
			switch {
			case !kv && st == "":
				st = w
			case key == "ST":
				st = v
			case key == "QR" || key == "QS":
				n, ok := parseUint(v, 32)
				if !ok {
					return nil, &LineError{"lsof", ln, fmt.Errorf("%s is not a queue size", w)}
				}
				if key == "QR" {
					s.RecvQ = uint32(n)
					queues++
				} else {
					s.SendQ = uint32(n)
				}
			}
		}
		if s.State, err = sockdiag.ParseState(st); err != nil {
			return nil, &LineError{"lsof", ln, err}
		}
		s.Inode = ino
		s.Info.State = uint8(s.State)
		p.owner(int(pid), unescapeLsof(f[0]), user)
		o := procscan.Owner{PID: int(pid), FD: int(fd)}
		key := lsofKey{ino, s.Local, s.Remote}
		if j, ok := index[key]; ok {
			dup := false
			for _, x := range all[j].Owners {
				dup = dup || x == o
			}
			if !dup {
				all[j].Owners = append(all[j].Owners, o)
			}
		} else {
			s.Owners = []procscan.Owner{o}
			index[key] = len(all)
			all = append(all, s)
		}
		rows++
	}
	if rows == 0 {
		return nil, &LineError{"lsof", lines.lastLine(), errors.New("no TCP lines")}
	}
	for _, s := range all {
		p.add(s)
	}
	p.owners = true
	p.inodes = false // lsof lists fds: a socket with no fd (accept queue) is never in it
	p.queues = queues > 0
	if p.queues {
		p.format += " -Tqs"
	}
	if !p.listening {
		p.format += " -sTCP:CLOSE_WAIT"
	}
	p.notices = append(p.notices, "lsof lists fds, so sockets waiting in an accept queue (never accepted) are not in it")
	return p, nil
}

// unescapeLsof undoes lsof's \xNN escapes in command names.
func unescapeLsof(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			var v byte
			ok := true
			for _, c := range []byte(s[i+2 : i+4]) {
				switch {
				case c >= '0' && c <= '9':
					v = v<<4 | (c - '0')
				case c >= 'a' && c <= 'f':
					v = v<<4 | (c - 'a' + 10)
				case c >= 'A' && c <= 'F':
					v = v<<4 | (c - 'A' + 10)
				default:
					ok = false
				}
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
