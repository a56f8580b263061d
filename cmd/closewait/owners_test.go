package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
)

func TestOwnersFlag(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 1, Unread: 2, Share: true})
	pids := strconv.Itoa(h.PID) + "," + strconv.Itoa(h.SharerPID)

	proc := reportJSON(t, run(t, nil, "--json", "--owners", "proc", "--pid", pids))
	if proc.Scan.Owners != "proc" {
		t.Errorf("--owners proc used %q", proc.Scan.Owners)
	}
	r := run(t, nil, "--json", "--owners", "ebpf", "--pid", pids)
	ebpf := reportJSON(t, r)
	if ebpf.Scan.Owners != "ebpf" {
		if strings.Contains(r.stderr, "unavailable") {
			cwtest.SkipNotSupported(t, strings.TrimSpace(r.stderr))
		}
		t.Fatalf("--owners ebpf used %q; stderr %s", ebpf.Scan.Owners, r.stderr)
	}
	for _, pid := range []int{h.PID, h.SharerPID} {
		a, b := findProc(proc, pid), findProc(ebpf, pid)
		if a == nil || b == nil || a.CloseWait != 3 || b.CloseWait != 3 {
			t.Errorf("pid %d: proc %+v, ebpf %+v; want 3 CLOSE_WAIT each", pid, a, b)
		}
	}

	// Without privilege the iterator cannot load: --owners ebpf says so once and walks /proc.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r = run(t, nobody, "--json", "--owners", "ebpf")
	if r.code == 3 || reportJSON(t, r).Scan.Owners != "proc" || !strings.Contains(r.stderr, "--owners ebpf unavailable") {
		t.Errorf("unprivileged --owners ebpf: exit %d, stderr %q", r.code, r.stderr)
	}
	// Under auto the fallback is silent.
	r = run(t, nobody, "--json")
	if strings.Contains(r.stderr, "ebpf") {
		t.Errorf("auto mentioned eBPF without -v: %q", r.stderr)
	}
	if r := run(t, nil, "--owners", "magic"); r.code != 3 {
		t.Errorf("--owners magic: exit %d", r.code)
	}
}
