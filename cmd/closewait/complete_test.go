package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
)

// TestCompletionOffersHoldersFirst (issue 16 item 15): explain <TAB> offers
// the processes holding CLOSE_WAIT first, with their comm and count, and no
// kernel threads; the bash completion keeps that order.
func TestCompletionOffersHoldersFirst(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	pid := strconv.Itoa(h.PID)
	r := run(t, nil, "complete-pids")
	if r.code != 0 {
		t.Fatalf("complete-pids: exit %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	holder, firstOther := -1, -1
	var pids []string
	for i, l := range lines {
		p, desc, ok := strings.Cut(l, "\t")
		if !ok {
			t.Fatalf("line %q is not PID<TAB>description", l)
		}
		pids = append(pids, p)
		if p == pid {
			holder = i
			if !strings.Contains(desc, "(2 CLOSE_WAIT)") || !strings.Contains(desc, holderComm(t, h.PID)) {
				t.Errorf("holder's line %q: want its comm and (2 CLOSE_WAIT)", l)
			}
		}
		if firstOther < 0 && !strings.Contains(desc, "CLOSE_WAIT)") {
			firstOther = i
		}
		if b, err := os.ReadFile("/proc/" + p + "/cmdline"); err == nil && len(b) == 0 {
			t.Errorf("kernel thread %s offered: %q", p, l)
		}
	}
	if holder < 0 || (firstOther >= 0 && holder > firstOther) {
		t.Errorf("holder %s at line %d, first process without CLOSE_WAIT at %d: want the holders first\n%.400s", pid, holder, firstOther, r.stdout)
	}
	if slices.Contains(pids, "2") {
		t.Errorf("kthreadd (pid 2) offered")
	}

	script := filepath.Join(t.TempDir(), "closewait.bash")
	os.WriteFile(script, []byte(run(t, nil, "completion", "bash").stdout), 0o644)
	sh := `source "$1"; COMP_WORDS=("$2" explain ""); COMP_CWORD=2; _closewait; printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", "-c", sh, "bash", script, binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if i := slices.Index(got, pid); i < 0 || (firstOther >= 0 && i > firstOther) {
		t.Errorf("bash completes explain with %v...: want holder %s among the first %d", got[:min(len(got), 10)], pid, firstOther)
	}
}
