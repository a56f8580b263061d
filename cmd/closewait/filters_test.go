package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
)

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Skipf("pid %d was reused at once", pid)
	}
	return pid
}

// TestDeadPIDExit3 (issue 16 item 14): every command given a pid that does
// not exist exits 3 with one line naming it, instead of an empty table or a
// "no process holds" report.
func TestDeadPIDExit3(t *testing.T) {
	pid := strconv.Itoa(deadPID(t))
	for _, args := range [][]string{
		{"--pid", pid},
		{"--json", "--pid", pid},
		{"sockets", "--pid", pid},
		{"sockets", "--json", "--pid", pid},
		{"explain", pid},
		{"watch", "--plain", "--count", "1", "--pid", pid},
		{"destroy", "--pid", pid},
		{"check", "--pid", pid},
		{"--pid", "1," + pid},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := run(t, nil, args...)
			if r.code != 3 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "no process "+pid+" ") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 3, nothing, one line naming process %s", r.code, r.stdout, r.stderr, pid)
			}
		})
	}
}

// holderComm reads a process's comm.
func holderComm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestFilterByProgram (issue 16 item 17): --comm and --runtime select
// processes by program in the report, sockets, watch and destroy.
func TestFilterByProgram(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	comm := holderComm(t, h.PID) // the Go test binary
	holderSockets := func(args ...string) int {
		var socks []struct {
			Remote string `json:"remote"`
			Owners []struct {
				PID int `json:"pid"`
			} `json:"owners"`
		}
		r := run(t, nil, append([]string{"sockets", "--json"}, args...)...)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &socks) != nil {
			t.Fatalf("sockets %v: exit %d %.200s %s", args, r.code, r.stdout, r.stderr)
		}
		n := 0
		for _, s := range socks {
			for _, o := range s.Owners {
				if o.PID == h.PID {
					n++
				}
			}
		}
		return n
	}
	inReport := func(args ...string) bool {
		return findProc(reportJSON(t, run(t, nil, append([]string{"--json"}, args...)...)), h.PID) != nil
	}
	inWatch := func(args ...string) bool {
		r := run(t, nil, append([]string{"watch", "--json", "--count", "1"}, args...)...)
		return strings.Contains(r.stdout, `"pid":`+strconv.Itoa(h.PID)+`,`) || strings.Contains(r.stdout, `"pid": `+strconv.Itoa(h.PID)+`,`)
	}
	inDestroy := func(args ...string) bool {
		r := run(t, nil, append([]string{"destroy", "--json"}, args...)...) // dry run
		d := destroyJSON(t, r)
		for _, s := range d.Sockets {
			for _, o := range s.Owners {
				if o.PID == h.PID {
					return true
				}
			}
		}
		return false
	}
	for i, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--comm", comm}, true},
		{[]string{"--comm", "no-such-program"}, false},
		{[]string{"--comm", comm[:3] + "*"}, true},
		{[]string{"-c", comm}, true},
		{[]string{"--runtime", "go"}, true},
		{[]string{"--runtime", "java,node"}, false},
		{[]string{"--comm", comm, "--runtime", "python"}, false},
		{[]string{"--comm", "no-such-program", "--pid", strconv.Itoa(h.PID)}, false},
	} {
		name := strings.Join(c.args, " ")
		if got := holderSockets(c.args...) == 2; got != c.want {
			t.Errorf("sockets %s: holder's 2 sockets listed %v, want %v", name, got, c.want)
		}
		if got := inReport(c.args...); got != c.want {
			t.Errorf("report %s: holder listed %v, want %v", name, got, c.want)
		}
		if i > 1 {
			continue // watch and destroy share the selection code: one case each way is enough (each run scans the host)
		}
		if got := inWatch(c.args...); got != c.want {
			t.Errorf("watch %s: holder listed %v, want %v", name, got, c.want)
		}
		if got := inDestroy(c.args...); got != c.want {
			t.Errorf("destroy %s (dry run): holder listed %v, want %v", name, got, c.want)
		}
	}
	if r := run(t, nil, "--runtime", "cobol"); r.code != 3 || !strings.Contains(r.stderr, "--runtime") {
		t.Errorf("--runtime cobol: exit %d %q", r.code, r.stderr)
	}
	if r := run(t, nil, "destroy", "--comm", "no-such-program", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "nothing to destroy") {
		t.Errorf("destroy --comm no-such-program --yes: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}
