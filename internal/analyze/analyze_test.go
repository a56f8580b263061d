package analyze

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/sockdiag"
)

type pc struct{ CW, NotAccepted int }

// The samples under testdata were saved by cmd/closewait's
// TestAnalyzeMatchesLiveReport (CLOSEWAIT_RECORD_ANALYZE=dir) while three
// holders kept CLOSE_WAIT sockets: pid 25259 on 127.0.0.1:34291 (4 accepted
// with SO_KEEPALIVE, 1 in the accept queue), pid 25264 on [::1]:37321 (3),
// pid 25269 on 127.0.0.1:40219 (2, shared with its child 25275). netstat
// samples are trimmed to those ports.
func TestSamples(t *testing.T) {
	all := map[int]pc{25259: {5, 1}, 25264: {3, 0}, 25269: {2, 0}, 25275: {2, 0}}
	fds := map[int]pc{25259: {4, 0}, 25264: {3, 0}, 25269: {2, 0}, 25275: {2, 0}}
	netstat := map[int]pc{25259: {5, 1}, 25264: {3, 0}, 25269: {2, 0}}
	tests := []struct {
		file, format string
		procs        map[int]pc
		unattributed int
		ages         bool
		keepalive    int
		missing      []string // words of Missing
	}{
		{"ss-tan.txt", "ss -tan", map[int]pc{}, 10, false, 0, []string{"no owners", "no ages", "no keepalive", "no fd counts"}},
		{"ss-tanp.txt", "ss -tanp", all, 0, false, 0, []string{"no ages", "no keepalive", "no fd counts"}},
		{"ss-tanpi.txt", "ss -tanpi", all, 0, true, 0, []string{"no keepalive", "no fd counts"}},
		{"ss-tanpieo.txt", "ss -tanpieo", all, 0, true, 4, []string{"no fd counts"}},
		{"ss-Htanp-state.txt", "ss -tanp state close-wait", fds, 1, false, 0, []string{"no listening", "no ages"}},
		{"netstat-antp.txt", "netstat -antp", netstat, 0, false, 0, []string{"no ages", "no keepalive"}},
		{"netstat-antpeo.txt", "netstat -antpo", netstat, 0, false, 4, []string{"no ages"}},
		{"lsof.txt", "lsof -nP -iTCP", fds, 0, false, 0, []string{"no Recv-Q", "no ages"}},
		{"lsof-closewait.txt", "lsof -nP -iTCP -sTCP:CLOSE_WAIT", fds, 0, false, 0, []string{"no Recv-Q", "no listening"}},
		{"ss-s.txt", "ss -s", map[int]pc{}, 0, false, 0, []string{"no CLOSE_WAIT count"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			when := time.Date(2026, 11, 25, 15, 58, 0, 0, time.UTC)
			res, err := Parse(data, Options{Host: "web-03", Time: when})
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != tt.format {
				t.Errorf("format %q, want %q", res.Format, tt.format)
			}
			snap := res.Snapshot
			if snap.Host != "web-03" || !snap.Time.Equal(when) {
				t.Errorf("host %q time %v", snap.Host, snap.Time)
			}
			r := res.Judge(diagnose.DefaultThresholds, diagnose.Options{})
			got := map[int]pc{}
			keep := 0
			for _, p := range r.Processes {
				got[p.PID] = pc{p.CloseWait, p.NotAccepted}
				if p.HasAge != tt.ages {
					t.Errorf("pid %d: has age %v, want %v", p.PID, p.HasAge, tt.ages)
				}
				if tt.ages && p.PID == 25259 && (p.Oldest < time.Second || p.Oldest > time.Minute) {
					t.Errorf("pid 25259 oldest %v, want a few seconds", p.Oldest)
				}
				if p.Process == nil || !strings.HasPrefix(p.Process.Comm, "closewait") {
					t.Errorf("pid %d: process %+v", p.PID, p.Process)
				}
				causes := map[string]bool{}
				for _, f := range p.Findings {
					causes[f.Cause] = true
				}
				if strings.HasPrefix(tt.file, "lsof") && (causes["missing-close"] || causes["abandoned-unread"]) {
					t.Errorf("pid %d: findings %v from an input without Recv-Q", p.PID, causes)
				}
				if tt.file == "ss-tanp.txt" && p.PID == 25259 && (!causes["not-accepted"] || !causes["missing-close"] && !causes["normal-half-close"]) {
					t.Errorf("pid 25259: findings %v, want not-accepted and the read-to-EOF ones", causes)
				}
			}
			for _, s := range snap.Sockets {
				if s.KeepaliveSet() {
					keep++
				}
			}
			if diff := cmp.Diff(tt.procs, got); diff != "" {
				t.Errorf("processes (-want +got):\n%s", diff)
			}
			if r.Unattributed.Count != tt.unattributed {
				t.Errorf("unattributed %d, want %d", r.Unattributed.Count, tt.unattributed)
			}
			if keep != tt.keepalive {
				t.Errorf("keepalive sockets %d, want %d", keep, tt.keepalive)
			}
			text := strings.Join(append(res.Missing, snap.Notices...), "\n")
			for _, w := range tt.missing {
				if !strings.Contains(text, w) {
					t.Errorf("missing/notices lack %q:\n%s", w, text)
				}
			}
		})
	}
	t.Run("ss-s counts", func(t *testing.T) {
		data, _ := os.ReadFile("testdata/ss-s.txt")
		res, err := Parse(data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[sockdiag.State]int{sockdiag.Established: 102014, sockdiag.TimeWait: 6050}
		if diff := cmp.Diff(want, res.Snapshot.States); diff != "" {
			t.Errorf("states (-want +got):\n%s", diff)
		}
		if res.Snapshot.Host != "unknown" || res.Snapshot.Time.IsZero() {
			t.Errorf("defaults: host %q time %v", res.Snapshot.Host, res.Snapshot.Time)
		}
	})
}

// sock is the part of a parsed socket the table below checks.
type sock struct {
	State       string
	Local       string
	Remote      string
	RecvQ       uint32
	Owners      []procscan.Owner
	NotAccepted bool
	Inbound     bool
	Age         time.Duration
	Keepalive   bool
}

// owners builds owners from pid, fd pairs.
func owners(pidFD ...int) []procscan.Owner {
	var out []procscan.Owner
	for i := 0; i+1 < len(pidFD); i += 2 {
		out = append(out, procscan.Owner{PID: pidFD[i], FD: pidFD[i+1]})
	}
	return out
}

func TestParseForms(t *testing.T) {
	const ssHead = "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
	tests := []struct {
		name  string
		in    string
		want  []sock
		procs map[int]string
	}{
		{
			name: "ss IPv4-mapped and bracketed IPv6, wildcard listener",
			in: ssHead +
				"LISTEN     0      10                      *:8080                  *:*     users:((\"java\",pid=4121,fd=3))\n" +
				"CLOSE-WAIT 1      0      [::ffff:10.0.0.1]:8080 [::ffff:10.0.0.9]:5000 users:((\"java\",pid=4121,fd=87),(\"java\",pid=4122,fd=87))\n" +
				"CLOSE-WAIT 0      0      [2001:db8::1]:8080 [2001:db8::9]:6000 users:((\"java\",pid=4121,fd=88))\n",
			want: []sock{
				{"CLOSE_WAIT", "10.0.0.1:8080", "10.0.0.9:5000", 1, owners(4121, 87, 4122, 87), false, true, 0, false},
				{"CLOSE_WAIT", "[2001:db8::1]:8080", "[2001:db8::9]:6000", 0, owners(4121, 88), false, true, 0, false},
			},
			procs: map[int]string{4121: "java", 4122: "java"},
		},
		{
			name: "ss -H, info on a continuation line, timer, not accepted",
			in: "LISTEN 2 128 127.0.0.1:80 0.0.0.0:* users:((\"nginx: worker\",pid=77,fd=6)) ino:100\n" +
				"CLOSE-WAIT 1 0 127.0.0.1:80 127.0.0.1:40000 ino:0 sk:1f\n\t cubic rtt:0.5/0.25 lastsnd:9000 lastrcv:9000 lastack:8000\n" +
				"CLOSE-WAIT 0 0 127.0.0.1:80 127.0.0.1:40001 users:((\"nginx: worker\",pid=77,fd=9)) timer:(keepalive,119min,0) ino:101\n\t cubic lastack:70000\n" +
				"ESTAB 0 0 127.0.0.1:80 127.0.0.1:40002 users:((\"nginx: worker\",pid=77,fd=10)) ino:102\n",
			want: []sock{
				{"CLOSE_WAIT", "127.0.0.1:80", "127.0.0.1:40000", 1, owners(77, -1), true, true, 8 * time.Second, false},
				{"CLOSE_WAIT", "127.0.0.1:80", "127.0.0.1:40001", 0, owners(77, 9), false, true, 70 * time.Second, true},
			},
			procs: map[int]string{77: "nginx: worker"},
		},
		{
			name: "ss owner listed twice is one owner",
			in: ssHead +
				"CLOSE-WAIT 1 0 10.1.1.1:51000 10.2.2.2:5432 users:((\"a\",pid=9,fd=4),(\"a\",pid=9,fd=5),(\"a\",pid=9,fd=4),(\"b\",pid=10,fd=4))\n",
			want: []sock{
				{"CLOSE_WAIT", "10.1.1.1:51000", "10.2.2.2:5432", 1, owners(9, 4, 9, 5, 10, 4), false, false, 0, false},
			},
			procs: map[int]string{9: "a", 10: "b"},
		},
		{
			name: "ss wrapped by a terminal, inside users:((...)) and before it",
			in: ssHead +
				"CLOSE-WAIT 1 0 10.1.1.1:51000 10.2.2.2:5432 users:((\"postgres-clie\n" +
				"nt\",pid=9,fd=4),(\"x\",pid=10,fd=4))\n" +
				"CLOSE-WAIT 1 0 10.1.1.1:51001\n" +
				"    10.2.2.2:5432\n" +
				"        users:((\"y\",pid=11,fd=5))\n",
			want: []sock{
				{"CLOSE_WAIT", "10.1.1.1:51000", "10.2.2.2:5432", 1, owners(9, 4, 10, 4), false, false, 0, false},
				{"CLOSE_WAIT", "10.1.1.1:51001", "10.2.2.2:5432", 1, owners(11, 5), false, false, 0, false},
			},
			procs: map[int]string{9: "postgres-client", 10: "x", 11: "y"},
		},
		{
			name: "ss command names with parentheses",
			in: ssHead +
				"CLOSE-WAIT 1 0 10.1.1.1:51000 10.2.2.2:5432 users:((\"(sd-pam\",pid=9,fd=4))\n" +
				"CLOSE-WAIT 1 0 10.1.1.1:51001 10.2.2.2:5432 users:((\"a)b\",pid=10,fd=4))\n",
			want: []sock{
				{"CLOSE_WAIT", "10.1.1.1:51000", "10.2.2.2:5432", 1, owners(9, 4), false, false, 0, false},
				{"CLOSE_WAIT", "10.1.1.1:51001", "10.2.2.2:5432", 1, owners(10, 4), false, false, 0, false},
			},
			procs: map[int]string{9: "(sd-pam", 10: "a)b"},
		},
		{
			name: "old ss users without pid= and fd=",
			in:   ssHead + "CLOSE-WAIT 1 0 10.1.1.1:51000 10.2.2.2:5432 users:((\"java\",4121,87),(\"java\",4122,87))\n",
			want: []sock{
				{"CLOSE_WAIT", "10.1.1.1:51000", "10.2.2.2:5432", 1, owners(4121, 87, 4122, 87), false, false, 0, false},
			},
			procs: map[int]string{4121: "java", 4122: "java"},
		},
		{
			name: "ss -tuan with Netid, -O one line, zone",
			in: "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n" +
				"udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\n" +
				"tcp CLOSE-WAIT 3 0 [fe80::1%eth0]:22 [fe80::2]:50000 users:((\"sshd\",pid=5,fd=7)) cubic rtt:1/0.5 lastack:1500\n",
			want: []sock{
				{"CLOSE_WAIT", "[fe80::1]:22", "[fe80::2]:50000", 3, owners(5, 7), false, false, 1500 * time.Millisecond, false},
			},
			procs: map[int]string{5: "sshd"},
		},
		{
			name: "netstat -antpW with mapped, v6, wildcard and names with spaces",
			in: "Active Internet connections (servers and established)\n" +
				"Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n" +
				"tcp6       0      0 :::8080                 :::*                    LISTEN      4121/java\n" +
				"tcp6       1      0 ::ffff:10.0.0.1:8080    ::ffff:10.0.0.9:5000    CLOSE_WAIT  4121/java\n" +
				"tcp6       1      0 2001:db8::1:8080        2001:db8::9:6000        CLOSE_WAIT  4122/Web Content\n" +
				"tcp        1      0 10.0.0.1:8080           10.0.0.8:5001           CLOSE_WAIT  -\n" +
				"udp        0      0 0.0.0.0:68              0.0.0.0:*                           1/systemd\n",
			want: []sock{
				{"CLOSE_WAIT", "10.0.0.1:8080", "10.0.0.9:5000", 1, owners(4121, -1), false, true, 0, false},
				{"CLOSE_WAIT", "[2001:db8::1]:8080", "[2001:db8::9]:6000", 1, owners(4122, -1), false, true, 0, false},
				{"CLOSE_WAIT", "10.0.0.1:8080", "10.0.0.8:5001", 1, owners(4121, -1), true, true, 0, false},
			},
			procs: map[int]string{4121: "java", 4122: "Web Content"},
		},
		{
			name: "netstat -ant without header and owners",
			in:   "tcp        1      0 10.0.0.1:8080           10.0.0.8:5001           CLOSE_WAIT\n",
			want: []sock{{"CLOSE_WAIT", "10.0.0.1:8080", "10.0.0.8:5001", 1, nil, false, false, 0, false}},
		},
		{
			name: "lsof -Tqs, -K columns, escaped command, shared fd, warnings",
			in: "lsof: WARNING: can't stat() fuse.gvfsd-fuse file system /run/user/1000/gvfs\n" +
				"      Output information may be incomplete.\n" +
				"COMMAND     PID   TID TASKCMD   USER   FD   TYPE DEVICE SIZE/OFF NODE NAME\n" +
				"my\\x20app   12               app    5u  IPv6  555      0t0  TCP *:9000 (LISTEN)\n" +
				"my\\x20app   12               app    7u  IPv6  556      0t0  TCP [::1]:9000->[::1]:41000 (CLOSE_WAIT QR=1 QS=0)\n" +
				"worker      13               app    7u  IPv6  556      0t0  TCP [::1]:9000->[::1]:41000 (CLOSE_WAIT QR=1 QS=0)\n" +
				"my\\x20app   12               app    8u  IPv4  557      0t0  TCP 10.0.0.1:33000->10.9.9.9:443 (ST=CLOSE_WAIT QR=0 QS=0)\n",
			want: []sock{
				{"CLOSE_WAIT", "[::1]:9000", "[::1]:41000", 1, owners(12, 7, 13, 7), false, true, 0, false},
				{"CLOSE_WAIT", "10.0.0.1:33000", "10.9.9.9:443", 0, owners(12, 8), false, false, 0, false},
			},
			procs: map[int]string{12: "my app", 13: "worker"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Parse([]byte(tt.in), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []sock
			for _, s := range res.Snapshot.Sockets {
				age, _ := s.Age()
				got = append(got, sock{s.State.String(), s.Local.String(), s.Remote.String(), s.RecvQ, s.Owners, s.NotAccepted, s.Inbound(), age, s.KeepaliveSet()})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sockets (-want +got):\n%s", diff)
			}
			procs := map[int]string{}
			for pid, p := range res.Snapshot.Processes {
				procs[pid] = p.Comm
			}
			if len(tt.procs) == 0 {
				tt.procs = map[int]string{}
			}
			if diff := cmp.Diff(tt.procs, procs); diff != "" {
				t.Errorf("processes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		line     int // 0: not a LineError
		want     string
		is       error
	}{
		{"empty", "", 0, "empty", ErrEmpty},
		{"blank", "\n  \n\t\n", 0, "empty", ErrEmpty},
		{"unknown", "GET / HTTP/1.1\nHost: x\n", 0, "unknown format", ErrUnknownFormat},
		{"ss bad state", "State Recv-Q Send-Q Local Address:Port Peer Address:Port\nCLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2\nBOGUS 1 0 1.1.1.1:1 2.2.2.2:2\n", 3, "does not start a socket line", nil},
		{"ss bad queue", "CLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2\nCLOSE-WAIT 1x 0 1.1.1.1:1 2.2.2.2:3\n", 2, "must be numbers", nil},
		{"ss bad address", "CLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2\nCLOSE-WAIT 1 0 1.1.1.1:1 2.2.2:2\n", 2, "not a numeric address", nil},
		{"ss bad port", "CLOSE-WAIT 1 0 1.1.1.1:http 2.2.2.2:2\n", 1, "not a port number", nil},
		{"ss port range", "CLOSE-WAIT 1 0 1.1.1.1:70000 2.2.2.2:2\n", 1, "out of range", nil},
		{"ss too few columns", "CLOSE-WAIT 1 0 1.1.1.1:1\n", 1, "columns", nil},
		{"ss bad users", "CLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2 users:((\"a\",pid=x,fd=1))\n", 1, "not a process id", nil},
		{"ss unclosed users", "CLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2 users:((\"a\",pid=1,fd=1)\n", 1, "unclosed", nil},
		{"ss -s no TCP", "Total: 5\nUDP: 3\n", 2, "TCP:", nil},
		{"ss -s bad", "Total: 5\nTCP: 3 (estab x)\n", 2, "not a count", nil},
		{"netstat bad state", "Proto Recv-Q Send-Q Local Address Foreign Address State\ntcp 0 0 1.1.1.1:1 2.2.2.2:2 WAITING\n", 2, "unknown TCP state", nil},
		{"netstat truncated v6", "Proto Recv-Q Send-Q Local Address Foreign Address State\ntcp6 0 0 2001:db8:1234:5678:9abc:de:8080 ::1:2 CLOSE_WAIT\n", 2, "-W", nil},
		{"netstat bad pid", "Proto Recv-Q Send-Q Local Address Foreign Address State PID/Program name\ntcp 0 0 1.1.1.1:1 2.2.2.2:2 CLOSE_WAIT java\n", 2, "PID/Program", nil},
		{"netstat junk", "Proto Recv-Q Send-Q Local Address Foreign Address State\nhello there\n", 2, "not a netstat", nil},
		{"lsof no state", "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\njava 1 a 5u IPv4 9 0t0 TCP 1.1.1.1:1->2.2.2.2:2\n", 2, "STATE", nil},
		{"lsof names", "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\njava 1 a 5u IPv4 9 0t0 TCP localhost:http->2.2.2.2:2 (CLOSE_WAIT)\n", 2, "-n", nil},
		{"lsof bad fd", "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\njava 1 a cwd IPv4 9 0t0 TCP 1.1.1.1:1->2.2.2.2:2 (CLOSE_WAIT)\n", 2, "FD", nil},
		{"lsof junk", "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\nsomething else entirely\n", 2, "not an lsof TCP line", nil},
		{"lsof only header", "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\n", 1, "no TCP lines", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), Options{})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tt.want)
			}
			var le *LineError
			if tt.line > 0 && (!errors.As(err, &le) || le.Line != tt.line) {
				t.Errorf("error %q, want it at line %d", err, tt.line)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in     string
		family int
		want   string
	}{
		{"127.0.0.1:80", 4, "127.0.0.1:80"},
		{"[::1]:80", 6, "[::1]:80"},
		{"[::ffff:10.0.0.1]:80", 6, "10.0.0.1:80"},
		{"::ffff:10.0.0.1:80", 6, "10.0.0.1:80"},
		{":::80", 6, "[::]:80"},
		{"*:80", 4, "0.0.0.0:80"},
		{"*:*", 6, "[::]:0"},
		{"0.0.0.0:*", 4, "0.0.0.0:0"},
		{"127.0.0.53%lo:53", 4, "127.0.0.53:53"},
	}
	for _, tt := range tests {
		got, err := parseEndpoint(tt.in, tt.family)
		if err != nil || got != netip.MustParseAddrPort(tt.want) {
			t.Errorf("parseEndpoint(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestReadGzip(t *testing.T) {
	data, err := os.ReadFile("testdata/ss-tanp.txt")
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(data)
	zw.Close()
	res, err := Read(&zb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != "ss -tanp" || len(res.Snapshot.Sockets) != 10 {
		t.Errorf("format %q, %d sockets; want ss -tanp and 10", res.Format, len(res.Snapshot.Sockets))
	}
	if _, err := Read(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0}), Options{}); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("broken gzip: %v", err)
	}
}
