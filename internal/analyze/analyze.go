package analyze

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// MaxInput is the largest input Read accepts, decompressed (a host with a
// million sockets saved by ss -tanpi is about 500 MB; this allows that with
// room). The input is read as a stream: memory follows the sockets found,
// not the size of the input.
const MaxInput = 1 << 30

// ErrEmpty is returned for an input with nothing but blank lines.
var ErrEmpty = errors.New("the input is empty")

// ErrUnknownFormat is returned when the input is none of the known formats.
var ErrUnknownFormat = errors.New("unknown format: expected the output of ss -tan[p][i], ss -s, netstat -ant[p] or lsof -nP -iTCP")

// LineError is a parse error at one line of the input (counted from 1).
type LineError struct {
	Format string
	Line   int
	Err    error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s output, line %d: %v", e.Format, e.Line, e.Err)
}
func (e *LineError) Unwrap() error { return e.Err }

// Options describe where the input came from.
type Options struct {
	// Host is the name of the host the output was saved on; "" means "unknown".
	Host string
	// Time is when the output was saved (e.g. the file's mtime); zero means now.
	Time time.Time
}

// Result is what Read found.
type Result struct {
	// Format names the tool and the options the input shows, e.g. "ss -tanpi".
	Format string
	// Snapshot holds the input's sockets: States counts every TCP socket seen,
	// Sockets the CLOSE_WAIT ones, Listeners the listening sockets they use,
	// Processes the owners with the few facts the text gives (pid, command, user).
	Snapshot *snapshot.Snapshot
	// Missing names what this format could not tell, in words.
	Missing []string

	queues  bool // the input shows Recv-Q
	ages    bool // the input shows tcp_info ages
	summary bool // the input has totals only (ss -s): no CLOSE_WAIT count
}

// HasAges reports whether the input carries age estimates (ss -i).
func (res *Result) HasAges() bool { return res.ages }

// Read detects the format of r and parses it, one line at a time.
// Gzip-compressed input is decompressed as it is read.
func Read(r io.Reader, opt Options) (*Result, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read gzip input: %w", err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	return parse(newLineSource(r), opt)
}

// Parse detects the format of data and parses it.
func Parse(data []byte, opt Options) (*Result, error) {
	return parse(newLineSource(bytes.NewReader(data)), opt)
}

func parse(ls *lineSource, opt Options) (*Result, error) {
	// Detect the format from the first meaningful line; the lines read
	// meanwhile are replayed to the parser.
	kind := ""
	var head []numbered
	for n, l := range ls.all() {
		head = append(head, numbered{n, l})
		if kind = detect(l); kind != "" {
			break
		}
	}
	ls.pending = head
	if ls.err != nil {
		return nil, ls.err
	}
	var p *parsed
	var err error
	switch kind {
	case "":
		if len(ls.pending) > 0 {
			return nil, ErrUnknownFormat
		}
		return nil, ErrEmpty
	case "ss":
		p, err = parseSS(ls)
	case "ss -s":
		p, err = parseSSSummary(ls)
	case "netstat":
		p, err = parseNetstat(ls)
	case "lsof":
		p, err = parseLsof(ls)
	default:
		return nil, ErrUnknownFormat
	}
	if ls.err != nil { // the input ended early: that is the problem to report
		return nil, ls.err
	}
	if err != nil {
		return nil, err
	}
	return p.result(opt), nil
}

// detect names the format from one non-blank line: "" when the line does
// not tell (a warning lsof prints before its table), "?" when it is none of
// the formats.
func detect(l string) string {
	f := strings.Fields(l)
	switch {
	case len(f) == 0:
		return ""
	case f[0] == "Total:":
		return "ss -s"
	case f[0] == "Netid" || (f[0] == "State" && len(f) > 1 && f[1] == "Recv-Q") || (f[0] == "Recv-Q" && len(f) > 1 && f[1] == "Send-Q"):
		return "ss"
	case f[0] == "Active" || f[0] == "Proto" || f[0] == "tcp" && len(f) > 5 && !strings.Contains(f[1], ":") || f[0] == "tcp6":
		return "netstat"
	case f[0] == "COMMAND" && slices.Contains(f, "NAME"):
		return "lsof"
	case f[0] == "tcp" || f[0] == "udp" || isSSState(f[0]):
		return "ss" // ss -H
	case len(f) >= 4 && isUint(f[0]) && isUint(f[1]) && strings.Contains(f[2], ":"):
		return "ss" // ss -H with a state filter
	case strings.HasPrefix(l, "lsof: ") || strings.HasPrefix(strings.TrimSpace(l), "Output information may be incomplete"):
		return ""
	}
	if len(f) >= 9 && isUint(f[1]) && slices.Contains(f, "TCP") {
		return "lsof" // lsof -nP without its header
	}
	return "?"
}

func isSSState(s string) bool {
	if !strings.Contains(s, "-") && s != "ESTAB" && s != "LISTEN" && s != "CLOSING" && s != "UNCONN" && s != "CLOSED" {
		return false
	}
	_, err := sockdiag.ParseState(s)
	return err == nil
}

func isUint(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parsed is what a format parser found, before it becomes a snapshot.
type parsed struct {
	format    string
	states    map[sockdiag.State]int
	sockets   []snapshot.Socket // CLOSE_WAIT
	listeners []snapshot.Socket
	procs     map[int]*procscan.Process
	notices   []string
	// What the input carries.
	owners, queues, info, inodes, timers, listening, stateless, summary bool
}

func newParsed(format string) *parsed {
	return &parsed{format: format, states: map[sockdiag.State]int{}, procs: map[int]*procscan.Process{}}
}

// add counts a socket and keeps it when it matters.
func (p *parsed) add(s snapshot.Socket) {
	p.states[s.State]++
	switch s.State {
	case sockdiag.CloseWait:
		p.sockets = append(p.sockets, s)
	case sockdiag.Listen:
		p.listening = true
		p.listeners = append(p.listeners, s)
	}
}

// owner records a process seen in the text.
func (p *parsed) owner(pid int, comm, user string) {
	pr := p.procs[pid]
	if pr == nil {
		pr = &procscan.Process{PID: pid}
		p.procs[pid] = pr
	}
	if pr.Comm == "" {
		pr.Comm = comm
	}
	if pr.User == "" {
		pr.User = user
	}
}

// missing lists, in words, what the input could not tell.
func (p *parsed) missing() []string {
	var m []string
	if p.summary {
		return []string{"no sockets (ss -s prints totals only, and no CLOSE_WAIT count: save ss -tanpi instead)",
			"no owners", "no ages", "no fd counts or limits"}
	}
	if !p.owners {
		m = append(m, "no owners (save it as root with -p: ss -tanpi, netstat -antp)")
	}
	if !p.queues {
		m = append(m, "no Recv-Q (read to EOF or never read cannot be told apart; lsof shows it with -T qs)")
	}
	if !p.info {
		m = append(m, "no ages (only ss -i shows tcp_info lastack)")
	}
	if !p.timers {
		m = append(m, "no keepalive timers (ss -o and netstat -o show which sockets have SO_KEEPALIVE)")
	}
	if !p.listening {
		m = append(m, "no listening sockets (inbound and outbound cannot be told apart: include LISTEN sockets)")
	}
	m = append(m, "no fd counts or limits (only closewait on the host reads /proc/PID/limits)")
	return m
}

// result links listeners, attributes not-accepted sockets and builds the snapshot.
func (p *parsed) result(opt Options) *Result {
	snap := &snapshot.Snapshot{
		Time:      opt.Time,
		Host:      opt.Host,
		States:    p.states,
		Detail:    sockdiag.NewStateSet(sockdiag.CloseWait),
		Sockets:   p.sockets,
		Processes: p.procs,
	}
	if snap.Time.IsZero() {
		snap.Time = time.Now()
	}
	if snap.Host == "" {
		snap.Host = "unknown"
	}
	snap.Listeners = linkListeners(snap.Sockets, p.listeners, p.owners, p.inodes)
	snap.Stats.Source = p.format
	snap.Stats.Owners = "none"
	if p.owners {
		snap.Stats.Owners = "text"
	}
	res := &Result{Format: p.format, Snapshot: snap, Missing: p.missing(), queues: p.queues || p.summary, ages: p.info, summary: p.summary}
	snap.Notices = append(snap.Notices, fmt.Sprintf("analyzed %s output from host %s: %s", p.format, snap.Host, strings.Join(res.Missing, "; ")))
	snap.Notices = append(snap.Notices, p.notices...)
	if p.owners {
		unowned := 0
		for _, s := range snap.Sockets {
			if len(s.Owners) == 0 {
				unowned++
			}
		}
		if unowned > 0 {
			snap.Partial = true
			snap.Notices = append(snap.Notices, fmt.Sprintf("%d CLOSE_WAIT sockets have no owner in the input (the tool shows only the processes its user could read)", unowned))
		}
	}
	return res
}

// linkListeners does what the live snapshot does: a socket whose local port
// is a listening port (same address or a wildcard) is inbound; an inbound
// socket with no fd (ss -e ino:0, or no owner while the listener has one)
// waits in the accept queue and belongs to the listener's owners.
func linkListeners(sockets, listeners []snapshot.Socket, owners, inodes bool) []snapshot.Socket {
	byPort := map[uint16][]int{}
	for i, l := range listeners {
		byPort[l.Local.Port()] = append(byPort[l.Local.Port()], i)
	}
	used := map[int]bool{}
	for i := range sockets {
		s := &sockets[i]
		li := -1
		for _, j := range byPort[s.Local.Port()] {
			a := listeners[j].Local.Addr()
			if a == s.Local.Addr() {
				li = j
				break
			}
			if a.IsUnspecified() && li < 0 {
				li = j
			}
		}
		if li < 0 {
			continue
		}
		l := &listeners[li]
		if !s.SetListener(l.Local) {
			continue
		}
		used[li] = true
		noFD := (inodes && s.Inode == 0) || (owners && !inodes && len(s.Owners) == 0 && len(l.Owners) > 0)
		if noFD && len(s.Owners) == 0 {
			s.NotAccepted = true
			for _, o := range l.Owners {
				s.Owners = append(s.Owners, procscan.Owner{PID: o.PID, FD: -1})
			}
		}
	}
	var out []snapshot.Socket
	for _, i := range slices.Sorted(maps.Keys(used)) {
		out = append(out, listeners[i])
	}
	return out
}

// parseEndpoint reads an address and port as the tools print them:
// 127.0.0.1:80, [::1]:80, [::ffff:10.0.0.1]:80, ::1:80 (netstat), *:80,
// 0.0.0.0:*, 127.0.0.53%lo:53. A "*" address is the unspecified address of
// the given family (4 or 6); a "*" port is 0.
func parseEndpoint(s string, family int) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not address:port", s)
	}
	host, port := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") {
		j := strings.IndexByte(host, ']')
		if j < 0 {
			return netip.AddrPort{}, fmt.Errorf("%q: unclosed [", s)
		}
		host = host[1:j]
	}
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	var addr netip.Addr
	switch host {
	case "*", "":
		addr = netip.IPv4Unspecified()
		if family == 6 {
			addr = netip.IPv6Unspecified()
		}
	default:
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q is not a numeric address (save the output with -n; netstat needs -W for long IPv6 addresses)", host)
		}
		addr = a.Unmap()
	}
	var pn uint64
	if port != "*" {
		if !isUint(port) {
			return netip.AddrPort{}, fmt.Errorf("%q is not a port number (save the output with -n / -P)", port)
		}
		for _, c := range []byte(port) {
			pn = pn*10 + uint64(c-'0')
		}
		if pn > 65535 {
			return netip.AddrPort{}, fmt.Errorf("port %s is out of range", port)
		}
	}
	return netip.AddrPortFrom(addr, uint16(pn)), nil
}

// familyOf returns AF_INET or AF_INET6 for the text of an address as printed.
func familyOf(s string) uint8 {
	if strings.Count(s, ":") > 1 {
		return 10 // AF_INET6, also for ::ffff:a.b.c.d
	}
	return 2
}

func parseUint(s string, bits int) (uint64, bool) {
	if !isUint(s) {
		return 0, false
	}
	var n uint64
	for _, c := range []byte(s) {
		d := uint64(c - '0')
		if n > (1<<bits-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
