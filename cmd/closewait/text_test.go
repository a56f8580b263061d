package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
)

// TestTextReportNamesNamespace checks that a process whose sockets live in
// another network namespace says so under its line.
func TestTextReportNamesNamespace(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) to make a network namespace")
	}
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	h := cwtest.Start(t, cwtest.Spec{NetNS: name, Unread: 2})
	r := run(t, nil, "--pid", strconv.Itoa(h.PID))
	want := "in netns net:[" + strconv.FormatUint(ino, 10) + "]"
	if !strings.Contains(r.stdout, want) {
		t.Errorf("report lacks %q:\n%s", want, r.stdout)
	}
}

// TestTextReportOfflineInput checks that a report of saved output says where
// it came from and leaves out what only a live host has.
func TestTextReportOfflineInput(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("needs ss(8) to capture output")
	}
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2})
	out, err := exec.Command("ss", "-tanp").Output()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ss.txt")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "analyze", file, "--pid", strconv.Itoa(h.PID))
	for _, want := range []string{"from saved ss", "No ages: the input has no tcp_info", strconv.Itoa(h.PID)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("offline report lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, unwanted := range []string{"More: closewait explain", "oldest 0ms", "Ages (~) are estimates"} {
		if strings.Contains(r.stdout, unwanted) {
			t.Errorf("offline report says %q:\n%s", unwanted, r.stdout)
		}
	}
}

// TestTextReportSelectedFooter checks that --pid counts the selected
// processes' sockets in the closing line, and names the host's apart.
func TestTextReportSelectedFooter(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 3})
	cwtest.Start(t, cwtest.Spec{Unread: 2}) // another process: on the host, not selected
	r := run(t, nil, "--pid", strconv.Itoa(h.PID))
	if !strings.Contains(r.stdout, "3 CLOSE_WAIT in the 1 selected processes (") {
		t.Errorf("footer does not count the selection:\n%s", r.stdout)
	}
}
