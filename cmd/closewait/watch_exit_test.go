package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
)

// TestWatchSignalExitCodes (issue 16 item 8): watch ends with the shell's
// code for the signal that stopped it: 130 for SIGINT, 143 for SIGTERM.
func TestWatchSignalExitCodes(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	for _, c := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			cmd := exec.Command(binary, "watch", "--plain", "--interval", "1s", "--pid", strconv.Itoa(h.PID))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if cmd.ProcessState == nil {
					_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
					_ = cmd.Wait()
				}
			}()
			if _, err := bufio.NewReader(out).ReadString('\n'); err != nil { // the first interval is out: the signal handler is set
				t.Fatalf("no first line: %v", err)
			}
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != c.want {
					t.Errorf("watch after %v: %v, want exit %d", c.sig, err, c.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("watch did not stop within 30s of %v", c.sig)
			}
		})
	}
}

// TestHistoryPathWithSpace (issue 16 item 8): --history PATH (with a space)
// names the store as --history=PATH does; a bare word says to use '='.
func TestHistoryPathWithSpace(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	pid := strconv.Itoa(h.PID)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"watch", "--history", filepath.Join(dir, "watch.db"), "--plain", "--count", "1", "--pid", pid},
		{"--history", filepath.Join(dir, "report.db"), "--pid", pid, "--color", "never"},
	} {
		r := run(t, nil, args...)
		if r.code == 3 {
			t.Errorf("%v: exit 3: %s", args, r.stderr)
		}
		if _, err := os.Stat(args[slices.Index(args, "--history")+1]); err != nil {
			t.Errorf("%v: the store was not written: %v", args, err)
		}
	}
	r := run(t, nil, "watch", "--history", "store", "--plain", "--count", "1")
	if r.code != 3 || !strings.Contains(r.stderr, "--history=store") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("--history store: exit %d, stderr %q; want 3 and one line suggesting --history=store", r.code, r.stderr)
	}
}
