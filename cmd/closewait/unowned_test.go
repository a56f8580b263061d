package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

// TestUnprivilegedGroupsUnownedSockets: a user who cannot read root's fd
// tables still gets root's CLOSE_WAIT sockets grouped by uid and port, with
// their cause by Recv-Q and a judgement, and one line on what root adds.
func TestUnprivilegedGroupsUnownedSockets(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 7, Unread: 3})
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r := run(t, nobody, "--json", "--count-warning", "5")
	var rep report.JSONReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s%s", err, r.stdout, r.stderr)
	}
	var g *report.JSONUnownedGroup
	for i, x := range rep.Summary.UnattributedGroups {
		if x.Direction == "inbound" && x.LocalPort == h.Listen.Port() {
			g = &rep.Summary.UnattributedGroups[i]
		}
	}
	if g == nil {
		t.Fatalf("no group for port %d in %+v", h.Listen.Port(), rep.Summary.UnattributedGroups)
	}
	if g.UID != 0 || g.User != "root" || g.Count != 10 || g.Cause != "missing-close" ||
		g.Causes["missing-close"] != 7 || g.Causes["abandoned-unread"] != 3 || g.Status != "warning" {
		t.Errorf("group %+v", *g)
	}
	text := run(t, nobody, "--count-warning", "5")
	if !strings.Contains(text.stdout, "uid 0 (root)") || strings.Count(text.stdout, "Owners unknown: run as root") != 1 {
		t.Errorf("text report:\n%s", text.stdout)
	}
}
