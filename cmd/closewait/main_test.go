package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

var binary string

func TestMain(m *testing.M) {
	if os.Getenv("CLOSEWAIT_CWTEST_ROLE") != "" {
		cwtest.Main(m) // a holder child: no binary needed
		return
	}
	dir, err := os.MkdirTemp("", "closewait-test-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // the unprivileged test runs it as nobody
	binary = filepath.Join(dir, "closewait")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	cwtest.Main(m, func() { os.RemoveAll(dir) })
}

// TestMainRemovesItsBinary runs this test binary again, running no test,
// with its own TMPDIR: the directory of the closewait binary it builds must
// be gone when it exits.
func TestMainRemovesItsBinary(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in TMPDIR: %s", e.Name())
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run closewait %v: %v", args, err)
	}
	if strings.Contains(errb.String(), "panic") || strings.Contains(errb.String(), "goroutine ") {
		t.Fatalf("closewait %v panicked:\n%s", args, errb.String())
	}
	return result{out.String(), errb.String(), code}
}

func reportJSON(t *testing.T, r result) report.JSONReport {
	t.Helper()
	var rep report.JSONReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report is not JSON (%v):\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return rep
}

func findProc(rep report.JSONReport, pid int) *report.JSONProcess {
	for i := range rep.Processes {
		if rep.Processes[i].PID == pid {
			return &rep.Processes[i]
		}
	}
	return nil
}

func needRoot(t *testing.T) {
	t.Helper()
	cwtest.NeedRoot(t, "runs holders and the report across users")
}

func TestReportJSONAttributesHolder(t *testing.T) {
	h4 := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 3})
	h6 := cwtest.Start(t, cwtest.Spec{Network: "tcp6", ReadEOF: 1, Unread: 1, NotAccepted: 1})
	time.Sleep(1100 * time.Millisecond)
	r := run(t, nil, "--json", "--pid", strconv.Itoa(h4.PID)+","+strconv.Itoa(h6.PID))
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (under every threshold)\n%s", r.code, r.stderr)
	}
	rep := reportJSON(t, r)
	if rep.Version != 1 || rep.Summary.Status != "ok" || rep.Summary.States["CLOSE_WAIT"] < 8 {
		t.Errorf("summary: version %d status %s states %v", rep.Version, rep.Summary.Status, rep.Summary.States)
	}
	for _, tc := range []struct {
		h          *cwtest.Holder
		cw, notAcc int
	}{{h4, 5, 0}, {h6, 3, 1}} {
		p := findProc(rep, tc.h.PID)
		if p == nil {
			t.Fatalf("holder %d not in the report", tc.h.PID)
		}
		if p.CloseWait != tc.cw || p.NotAccepted != tc.notAcc || p.Status != "ok" {
			t.Errorf("holder %d: close_wait %d not_accepted %d status %s; want %d, %d, ok", tc.h.PID, p.CloseWait, p.NotAccepted, p.Status, tc.cw, tc.notAcc)
		}
		if p.OldestAgeSeconds == nil || *p.OldestAgeSeconds < 1 || *p.OldestAgeSeconds > 60 {
			t.Errorf("holder %d: oldest age %v, want about 1s", tc.h.PID, p.OldestAgeSeconds)
		}
		if p.FDLimit == 0 || p.OpenFDs < tc.cw-tc.notAcc || !strings.Contains(p.Cmdline, "-test.run") || p.User == "" {
			t.Errorf("holder %d facts: %+v", tc.h.PID, p)
		}
	}
	if len(rep.Processes) != 2 {
		t.Errorf("--pid kept %d processes, want 2", len(rep.Processes))
	}
}

func TestReportExitCodesFollowThresholds(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 6, FDLimit: 64})
	low := cwtest.Start(t, cwtest.Spec{Unread: 6, FDLimit: 18})
	time.Sleep(300 * time.Millisecond)
	pid, lowPID := strconv.Itoa(h.PID), strconv.Itoa(low.PID)
	tests := []struct {
		name   string
		args   []string
		code   int
		status string
	}{
		{"defaults", []string{"--pid", pid}, 0, "ok"},
		{"count warning", []string{"--pid", pid, "--count-warning", "5"}, 1, "warning"},
		{"count at threshold", []string{"--pid", pid, "--count-warning", "6"}, 0, "ok"},
		{"count critical", []string{"--pid", pid, "--count-critical", "5"}, 2, "critical"},
		{"age warning", []string{"--pid", pid, "--age-warning", "200ms"}, 1, "warning"},
		{"age critical", []string{"--pid", pid, "--age-critical", "200ms"}, 2, "critical"},
		{"age not reached", []string{"--pid", pid, "--age-warning", "1h"}, 0, "ok"},
		{"fd share critical", []string{"--pid", lowPID}, 2, "critical"},
		{"fd share off", []string{"--pid", lowPID, "--fd-critical", "0"}, 0, "ok"},
		{"fd share warning", []string{"--pid", lowPID, "--fd-critical", "0", "--fd-warning", "0.3"}, 1, "warning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, nil, append([]string{"--json"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\n%s", r.code, tt.code, r.stderr)
			}
			rep := reportJSON(t, r)
			if rep.Summary.Status != tt.status {
				t.Errorf("status %s, want %s", rep.Summary.Status, tt.status)
			}
			// The text report exits the same way.
			if tr := run(t, nil, tt.args...); tr.code != tt.code || !strings.Contains(tr.stdout, strings.ToUpper(tt.status)) {
				t.Errorf("text report: exit %d, want %d; output:\n%s", tr.code, tt.code, tr.stdout)
			}
		})
	}
}

func TestReportSharedSocketsCountForBothOwners(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1, Unread: 2, Share: true})
	rep := reportJSON(t, run(t, nil, "--json", "--pid", strconv.Itoa(h.PID)+","+strconv.Itoa(h.SharerPID)))
	for _, pid := range []int{h.PID, h.SharerPID} {
		if p := findProc(rep, pid); p == nil || p.CloseWait != 3 {
			t.Errorf("pid %d: %+v, want 3 CLOSE_WAIT", pid, p)
		}
	}
}

func TestSocketsFormatsAndFilters(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2, UnreadBytes: 7})
	other := cwtest.Start(t, cwtest.Spec{Unread: 1})
	pid := strconv.Itoa(h.PID)
	type sock struct {
		State  string  `json:"state"`
		Local  string  `json:"local"`
		Remote string  `json:"remote"`
		RecvQ  int     `json:"recv_q"`
		Inode  uint64  `json:"inode"`
		Age    float64 `json:"age_seconds"`
		Dir    string  `json:"direction"`
		Owners []struct {
			PID  int    `json:"pid"`
			FD   int    `json:"fd"`
			Comm string `json:"comm"`
		} `json:"owners"`
	}
	r := run(t, nil, "sockets", "--json", "--pid", pid)
	var socks []sock
	if err := json.Unmarshal([]byte(r.stdout), &socks); err != nil || r.code != 0 {
		t.Fatalf("sockets --json: %v, exit %d\n%s", err, r.code, r.stdout)
	}
	if len(socks) != 4 {
		t.Fatalf("--pid %s listed %d sockets, want the holder's 4", pid, len(socks))
	}
	recvQ := map[int]int{}
	for _, s := range socks {
		recvQ[s.RecvQ]++
		if s.State != "CLOSE_WAIT" || len(s.Owners) != 1 || s.Owners[0].PID != h.PID || s.Owners[0].FD < 3 || s.Inode == 0 || s.Dir != "inbound" {
			t.Errorf("socket %+v", s)
		}
	}
	if recvQ[0] != 2 || recvQ[8] != 2 {
		t.Errorf("Recv-Q histogram %v, want two at 0 (read EOF) and two at 8 (7 bytes + FIN)", recvQ)
	}

	// --port selects by the holder's listening port; other holders do not leak in.
	r = run(t, nil, "sockets", "--ndjson", "--port", strconv.Itoa(int(h.Listen.Port())))
	if lines := strings.Count(r.stdout, "\n"); lines != 4 {
		t.Errorf("--ndjson --port: %d lines, want 4:\n%s", lines, r.stdout)
	}
	// --remote with the exact peer address:port picks one socket.
	peer := h.Conns[0].Remote.String()
	r = run(t, nil, "sockets", "--csv", "--remote", peer)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "state,local,remote") || !strings.Contains(rows[1], peer) {
		t.Errorf("--csv --remote %s:\n%s", peer, r.stdout)
	}
	// --min-age beyond the holders' age selects nothing of theirs.
	r = run(t, nil, "sockets", "--json", "--min-age", "1h", "--pid", pid+","+strconv.Itoa(other.PID))
	if strings.TrimSpace(r.stdout) != "[\n]" && strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("--min-age 1h: %s", r.stdout)
	}
	// The table names the owner the way ss does.
	r = run(t, nil, "sockets", "--pid", pid)
	if !strings.Contains(r.stdout, "pid="+pid+",fd=") || !strings.Contains(r.stdout, "CLOSE_WAIT") {
		t.Errorf("table:\n%s", r.stdout)
	}
}

func TestBadInputIsOneLineAndExit3(t *testing.T) {
	tests := [][]string{
		{"--bogus"},
		{"--fd-critical", "2"},
		{"--age-warning", "soon"},
		{"sockets", "--state", "half-open"},
		{"sockets", "--remote", "not-an-address"},
		{"sockets", "--json", "--csv"},
		{"sockets", "--pid", "-4"},
		{"--path.procfs", "/nonexistent"},
		{"nosuchcommand"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := run(t, nil, args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 3 || len(lines) != 1 || !strings.HasPrefix(lines[0], "closewait: ") {
				t.Errorf("exit %d, stderr %q; want exit 3 and one line", r.code, r.stderr)
			}
		})
	}
}

func TestUnprivilegedRunDegrades(t *testing.T) {
	needRoot(t)
	rootHolder := cwtest.Start(t, cwtest.Spec{Unread: 2})
	nobodyHolder := cwtest.Start(t, cwtest.Spec{Unread: 3, UID: 65534, GID: 65534})
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}

	r := run(t, nobody, "--json")
	if r.code == 3 {
		t.Fatalf("unprivileged report could not run: %s", r.stderr)
	}
	rep := reportJSON(t, r)
	if p := findProc(rep, nobodyHolder.PID); p == nil || p.CloseWait != 3 {
		t.Errorf("nobody's own holder: %+v, want 3 CLOSE_WAIT attributed", p)
	}
	if findProc(rep, rootHolder.PID) != nil {
		t.Errorf("root's holder attributed by an unprivileged run")
	}
	if rep.Summary.UnattributedCloseWait < 2 {
		t.Errorf("unattributed %d, want at least root holder's 2", rep.Summary.UnattributedCloseWait)
	}
	if !strings.Contains(r.stderr, "CAP_SYS_PTRACE") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr should say once what is missing and which privilege gives it:\n%s", r.stderr)
	}
	if len(rep.Notices) == 0 || !rep.Scan.Partial {
		t.Errorf("JSON does not record the partial view: notices %v partial %v", rep.Notices, rep.Scan.Partial)
	}
	// The socket list still shows root's sockets, without owners.
	r = run(t, nobody, "sockets", "--port", strconv.Itoa(int(rootHolder.Listen.Port())), "--no-headers")
	if n := strings.Count(r.stdout, "CLOSE_WAIT"); n != 2 || r.code != 0 {
		t.Errorf("unprivileged sockets: %d CLOSE_WAIT rows, exit %d:\n%s", n, r.code, r.stdout)
	}
}
