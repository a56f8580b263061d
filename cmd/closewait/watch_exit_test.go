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
			if code := signalExit(t, cmd, c.sig); code != c.want {
				t.Errorf("watch after %v: exit %d, want %d", c.sig, code, c.want)
			}
		})
	}
}

// signalExit sends sig to the started cmd and returns its exit code once it
// has exited (-1 when a signal killed it). It fails the test when cmd is
// still running 30 s later.
func signalExit(t *testing.T, cmd *exec.Cmd, sig os.Signal) int {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s after %v: %v", cmd.Args[1], sig, err)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of %v", cmd.Args[1], sig)
	}
	return -1
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
