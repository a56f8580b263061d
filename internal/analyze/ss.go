package analyze

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// ssRecord is one socket of ss output, possibly spread over several lines
// (-i puts tcp_info on a continuation line; a narrow terminal wraps).
type ssRecord struct {
	line   int
	fields []string        // leading columns
	rest   strings.Builder // everything after them: users:(...), key:value tokens
	// The parenthesis depth and quoting at the end of rest, kept as it
	// grows (a terminal may wrap users:((...)) in the middle).
	depth   int
	inQuote bool
}

// addRest appends text after the leading columns: glued to what is there
// when a users:((...)) was cut in the middle, else after a space.
func (r *ssRecord) addRest(t string) error {
	if t == "" {
		return nil
	}
	if r.rest.Len()+len(t) > MaxLine {
		return fmt.Errorf("the socket continues over more than %d MiB of lines", MaxLine>>20)
	}
	if r.rest.Len() > 0 && !r.unbalanced() {
		r.rest.WriteByte(' ')
	}
	r.rest.WriteString(t)
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '"':
			r.inQuote = !r.inQuote
		case r.inQuote:
		case c == '(':
			r.depth++
		case c == ')':
			r.depth--
		}
	}
	return nil
}

// unbalanced reports whether the record's text has an open parenthesis or
// quote, as when a terminal wrapped users:((...)) in the middle.
func (r *ssRecord) unbalanced() bool { return r != nil && (r.depth > 0 || r.inQuote) }

// parseSS reads ss -tan[p][i][e][o] output, with or without a header (-H),
// with or without a State column (a "state close-wait" filter drops it), with
// or without a Netid column (-tuan). Each socket is judged when the next one
// starts: only the sockets that matter are kept.
func parseSS(lines *lineSource) (*parsed, error) {
	p := newParsed("ss")
	hasNetid, hasState := false, true
	decided := false
	var flags struct{ p, i, e, o bool }
	var cur *ssRecord
	records := 0
	want := func() int {
		n := 4
		if hasNetid {
			n++
		}
		if hasState {
			n++
		}
		return n
	}
	// finish turns the record into a socket.
	finish := func(r *ssRecord) error {
		if len(r.fields) < want() {
			return &LineError{"ss", r.line, fmt.Errorf("the line has %d columns, expected %d (%s)", len(r.fields), want(), ssExpect(hasNetid, hasState))}
		}
		fl := r.fields
		if hasNetid {
			if fl[0] != "tcp" {
				return nil
			}
			fl = fl[1:]
		}
		s := snapshot.Socket{}
		s.State = sockdiag.CloseWait
		if hasState {
			st, err := sockdiag.ParseState(fl[0])
			if err != nil {
				return &LineError{"ss", r.line, err}
			}
			s.State = st
			fl = fl[1:]
		}
		rq, ok1 := parseUint(fl[0], 32)
		sq, ok2 := parseUint(fl[1], 32)
		if !ok1 || !ok2 {
			return &LineError{"ss", r.line, fmt.Errorf("Recv-Q %q and Send-Q %q must be numbers", fl[0], fl[1])}
		}
		s.RecvQ, s.SendQ = uint32(rq), uint32(sq)
		fam := 4
		if strings.Count(fl[2], ":") > 1 {
			fam = 6
		}
		var err error
		if s.Local, err = parseEndpoint(fl[2], fam); err != nil {
			return &LineError{"ss", r.line, fmt.Errorf("local address: %w", err)}
		}
		if s.Remote, err = parseEndpoint(fl[3], fam); err != nil {
			return &LineError{"ss", r.line, fmt.Errorf("peer address: %w", err)}
		}
		s.Family = familyOf(fl[2])
		if err := p.ssRest(&s, r.rest.String(), &flags); err != nil {
			return &LineError{"ss", r.line, err}
		}
		p.add(s)
		return nil
	}
	for ln, l := range lines.all() {
		if cur != nil && (l[0] == '\t' || l[0] == ' ') && len(cur.fields) >= want() {
			// A continuation (tcp_info, or a wrapped process column): kept as text.
			if err := cur.addRest(strings.TrimSpace(l)); err != nil {
				return nil, &LineError{"ss", cur.line, err}
			}
			continue
		}
		f := strings.Fields(l)
		if !decided {
			decided = true
			switch {
			case f[0] == "Netid":
				hasNetid = true
				hasState = len(f) > 1 && f[1] == "State"
				continue
			case f[0] == "State":
				continue
			case f[0] == "Recv-Q":
				hasState = false
				continue
			case f[0] == "tcp" || f[0] == "udp" || f[0] == "raw" || f[0] == "u_str":
				hasNetid = true
			case isUint(f[0]):
				hasState = false
			}
		}
		startsRecord := l[0] != ' ' && l[0] != '\t' && (cur == nil || len(cur.fields) >= want()) && !cur.unbalanced()
		if startsRecord {
			first := f[0]
			if hasNetid && len(f) > 1 {
				first = f[1]
			}
			ok := isUint(first)
			if hasState {
				ok = isSSState(first)
			}
			if hasNetid && !(f[0] == "tcp" || f[0] == "udp" || f[0] == "raw" || f[0] == "icmp6" || f[0] == "mptcp" || f[0] == "sctp" || strings.HasPrefix(f[0], "u_") || f[0] == "nl" || f[0] == "p_raw" || f[0] == "p_dgr" || f[0] == "v_str" || f[0] == "v_dgr" || f[0] == "xdp" || f[0] == "tipc") {
				ok = false
			}
			if !ok && !looksLikeContinuation(f[0]) {
				return nil, &LineError{"ss", ln, fmt.Errorf("%q does not start a socket line (expected %s)", truncate(l), ssExpect(hasNetid, hasState))}
			}
			if ok {
				if cur != nil {
					if err := finish(cur); err != nil {
						return nil, err
					}
				}
				cur = &ssRecord{line: ln}
				records++
			}
		}
		if cur == nil {
			return nil, &LineError{"ss", ln, fmt.Errorf("%q continues no socket line", truncate(l))}
		}
		// Leading columns first, then the rest as text.
		k := 0
		for len(cur.fields) < want() && k < len(f) {
			cur.fields = append(cur.fields, f[k])
			k++
		}
		if k < len(f) {
			if err := cur.addRest(strings.Join(f[k:], " ")); err != nil {
				return nil, &LineError{"ss", cur.line, err}
			}
		}
	}
	if records == 0 {
		return nil, &LineError{"ss", lines.lastLine(), errors.New("no socket lines")}
	}
	if err := finish(cur); err != nil {
		return nil, err
	}
	p.stateless = !hasState
	p.owners, p.info, p.inodes, p.timers, p.queues = flags.p, flags.i, flags.e, flags.o, true
	p.format = "ss -tan"
	for _, x := range []struct {
		on bool
		c  string
	}{{flags.p, "p"}, {flags.i, "i"}, {flags.e, "e"}, {flags.o, "o"}} {
		if x.on {
			p.format += x.c
		}
	}
	if !hasState {
		p.format += " state close-wait"
		p.notices = append(p.notices, "the input has no State column (ss was filtered by state): every socket in it is taken as CLOSE_WAIT")
	}
	return p, nil
}

func ssExpect(netid, state bool) string {
	s := "Recv-Q Send-Q Local:Port Peer:Port"
	if state {
		s = "State " + s
	}
	if netid {
		s = "Netid " + s
	}
	return s
}

// looksLikeContinuation is true for the start of what ss prints after the
// addresses: users:(...), ino:N, timer:(...), tcp_info words.
func looksLikeContinuation(tok string) bool {
	return strings.Contains(tok, ":") || strings.HasPrefix(tok, "users") || tok == "ts" || tok == "sack" ||
		tok == "cubic" || tok == "bbr" || tok == "reno" || tok == "send" || tok == "pacing_rate" ||
		tok == "app_limited" || tok == "ecn" || tok == "ecnseen"
}

// ssRest reads what follows the addresses: process, -e, -o and -i fields.
func (p *parsed) ssRest(s *snapshot.Socket, rest string, flags *struct{ p, i, e, o bool }) error {
	if i := strings.Index(rest, "users:("); i >= 0 {
		flags.p = true
		j := closing(rest, i+len("users:"))
		if j < 0 {
			return fmt.Errorf("unclosed users:( in %q", truncate(rest[i:]))
		}
		owners, err := p.ssUsers(rest[i+len("users:") : j+1])
		if err != nil {
			return err
		}
		s.Owners = owners
		rest = rest[:i] + " " + rest[j+1:]
	}
	for tok := range strings.FieldsSeq(rest) {
		k, v, ok := strings.Cut(tok, ":")
		if !ok {
			continue
		}
		switch k {
		case "ino":
			flags.e = true
			n, ok := parseUint(v, 64)
			if !ok {
				return fmt.Errorf("ino:%q is not a number", v)
			}
			s.Inode = n
		case "uid":
			flags.e = true
			if n, ok := parseUint(v, 32); ok {
				s.UID = uint32(n)
			}
		case "sk":
			flags.e = true
			if n, err := strconv.ParseUint(v, 16, 64); err == nil {
				s.Cookie = n
			}
		case "timer":
			flags.o = true
			name, _, _ := strings.Cut(strings.TrimPrefix(v, "("), ",")
			switch name {
			case "keepalive":
				s.Timer = sockdiag.TimerKeepalive
			case "on":
				s.Timer = sockdiag.TimerRetrans
			case "timewait":
				s.Timer = sockdiag.TimerTimeWait
			case "persist":
				s.Timer = sockdiag.TimerProbe
			}
		case "lastack", "lastrcv", "lastsnd":
			flags.i = true
			s.HasInfo = true
			n, ok := parseUint(v, 32)
			if !ok {
				return fmt.Errorf("%s:%q is not a number of milliseconds", k, v)
			}
			switch k {
			case "lastack":
				s.Info.LastAckRecv = uint32(n)
			case "lastrcv":
				s.Info.LastDataRecv = uint32(n)
			case "lastsnd":
				s.Info.LastDataSent = uint32(n)
			}
		case "rtt":
			flags.i = true
			s.HasInfo = true
			a, b, _ := strings.Cut(v, "/")
			s.Info.RTT = msToMicros(a)
			s.Info.RTTVar = msToMicros(b)
		case "bytes_received", "bytes_acked":
			if n, ok := parseUint(v, 64); ok {
				if k == "bytes_received" {
					s.Info.BytesReceived = n
				} else {
					s.Info.BytesAcked = n
				}
			}
		case "cwnd", "mss", "rto", "wscale":
			flags.i = true
		}
	}
	s.Info.State = uint8(s.State)
	return nil
}

// ssUsers reads (("comm",pid=N,fd=M),("comm",pid=N,fd=M)).
func (p *parsed) ssUsers(u string) ([]procscan.Owner, error) {
	in := strings.TrimSuffix(strings.TrimPrefix(u, "("), ")")
	var out []procscan.Owner
	seen := map[procscan.Owner]bool{} // an entry listed twice is one owner
	for in != "" {
		in = strings.TrimLeft(in, ", ")
		if in == "" {
			break
		}
		if !strings.HasPrefix(in, `("`) {
			return nil, fmt.Errorf("users:%s: expected (\"command\",pid=N,fd=N)", truncate(u))
		}
		in = in[2:]
		// ("comm",pid=N,fd=M), or ("comm",N,M) from ss before iproute2 3.x.
		sep, fdSep := `",pid=`, ",fd="
		q := strings.Index(in, sep)
		if q < 0 {
			sep, fdSep = `",`, ","
			q = strings.Index(in, sep)
		}
		if q < 0 {
			return nil, fmt.Errorf("users:%s: no pid", truncate(u))
		}
		comm := in[:q]
		in = in[q+len(sep):]
		end := strings.IndexByte(in, ')')
		if end < 0 {
			return nil, fmt.Errorf("users:%s: unclosed entry", truncate(u))
		}
		entry := in[:end]
		in = in[end+1:]
		pidS, fdS, _ := strings.Cut(entry, fdSep)
		pid, ok := parseUint(pidS, 31)
		if !ok || pid == 0 {
			return nil, fmt.Errorf("users:%s: pid %q is not a process id", truncate(u), pidS)
		}
		fd, ok := parseUint(fdS, 31)
		if !ok {
			return nil, fmt.Errorf("users:%s: fd %q is not a number", truncate(u), fdS)
		}
		p.owner(int(pid), comm, "")
		o := procscan.Owner{PID: int(pid), FD: int(fd)}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out, nil
}

// closing returns the index of the parenthesis closing the one at s[open], or -1.
func closing(s string, open int) int {
	depth := 0
	inQuote := false
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case '(':
			if !inQuote {
				depth++
			}
		case ')':
			if !inQuote {
				depth--
				if depth == 0 {
					return i
				}
			}
		}
	}
	return -1
}

// msToMicros converts ss's "0.123" milliseconds to microseconds.
func msToMicros(s string) uint32 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 4e6 {
		return 0
	}
	return uint32(f*1000 + 0.5)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// parseSSSummary reads ss -s: only the TCP line's totals.
func parseSSSummary(lines *lineSource) (*parsed, error) {
	p := newParsed("ss -s")
	p.summary = true
	found := false
	for ln, l := range lines.all() {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		found = true
		// TCP:   105532 (estab 103730, closed 62, orphaned 0, timewait 62)
		in := l[strings.IndexByte(l, ':')+1:]
		o, c := strings.IndexByte(in, '('), strings.LastIndexByte(in, ')')
		if o < 0 || c < o {
			return nil, &LineError{"ss -s", ln, fmt.Errorf("expected TCP: N (estab N, closed N, orphaned N, timewait N), got %q", truncate(l))}
		}
		for _, part := range strings.Split(in[o+1:c], ",") {
			kv := strings.Fields(part)
			if len(kv) != 2 {
				return nil, &LineError{"ss -s", ln, fmt.Errorf("%q is not \"name count\"", strings.TrimSpace(part))}
			}
			n, ok := parseUint(kv[1], 31)
			if !ok {
				return nil, &LineError{"ss -s", ln, fmt.Errorf("%q is not a count", kv[1])}
			}
			switch kv[0] {
			case "estab":
				p.states[sockdiag.Established] = int(n)
			case "timewait":
				p.states[sockdiag.TimeWait] = int(n)
			}
		}
		break
	}
	if !found {
		return nil, &LineError{"ss -s", lines.lastLine(), errors.New("no \"TCP:\" line")}
	}
	p.notices = append(p.notices, "ss -s has no CLOSE_WAIT count: its \"estab\" is the kernel's tcpCurrEstab, which counts ESTABLISHED and CLOSE_WAIT sockets together (RFC 1213), so CLOSE_WAIT is unknown, not zero (save ss -tanpi instead)")
	return p, nil
}
