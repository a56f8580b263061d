package main

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

// kernelSockets dumps the CLOSE_WAIT sockets on the holder's listening port,
// in the namespace path refers to ("" for the test's own).
func kernelSockets(t *testing.T, h *cwtest.Holder, path string) map[netip.AddrPort]bool {
	t.Helper()
	var c *sockdiag.Conn
	var err error
	if path == "" {
		c, err = sockdiag.Dial()
	} else {
		err = netns.Do(path, func() error { c, err = sockdiag.Dial(); return err })
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[netip.AddrPort]bool{}
	err = c.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait)}, func(s *sockdiag.Socket) bool {
		if s.Local.Port() == h.Listen.Port() {
			got[s.Remote] = true
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

type destroyResult struct {
	DryRun    bool   `json:"dry_run"`
	Selected  int    `json:"selected"`
	Destroyed int    `json:"destroyed"`
	Failed    int    `json:"failed"`
	Note      string `json:"note"`
	Sockets   []struct {
		Remote string `json:"remote"`
		Result string `json:"result"`
		Owners []struct {
			PID int `json:"pid"`
		} `json:"owners"`
	} `json:"sockets"`
}

func destroyJSON(t *testing.T, r result) destroyResult {
	t.Helper()
	var out destroyResult
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("destroy --json is not JSON (%v):\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return out
}

func TestDestroyDryRunThenYes(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2, UnreadBytes: 3, NotAccepted: 1})
	bystander := cwtest.Start(t, cwtest.Spec{Unread: 1})
	pid := strconv.Itoa(h.PID)

	r := run(t, nil, "destroy", "--pid", pid)
	if r.code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"Would destroy 5 CLOSE_WAIT sockets (dry run)",
		"does not close file descriptors",
		"the real fix is in the application",
		"pid " + pid + " (",
		"1 socket never accepted (no fd)",
		"Dry run: nothing was destroyed. Add --yes",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, c := range h.Conns {
		if !strings.Contains(r.stdout, c.Remote.String()) {
			t.Errorf("dry run does not list the %s socket to %v", c.Mode, c.Remote)
		}
	}
	if strings.Contains(r.stdout, "destroyed ") {
		t.Errorf("dry run says it destroyed something:\n%s", r.stdout)
	}
	dj := destroyJSON(t, run(t, nil, "destroy", "--pid", pid, "--json"))
	if !dj.DryRun || dj.Selected != 5 || len(dj.Sockets) != 5 || !strings.Contains(dj.Note, "does not close file descriptors") {
		t.Errorf("dry run --json: %+v", dj)
	}
	for _, s := range dj.Sockets {
		if s.Result != "would-destroy" || len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
			t.Errorf("dry run --json socket %+v", s)
		}
	}
	if got := kernelSockets(t, h, ""); len(got) != 5 {
		t.Fatalf("after the dry runs the kernel has %d of the holder's 5 CLOSE_WAIT sockets", len(got))
	}
	for remote, p := range h.Probe() {
		if p.Write != "ok" {
			t.Errorf("before destroy, the holder's write to %v: %s, want ok (the peer only half-closed)", remote, p.Write)
		}
	}

	r = run(t, nil, "destroy", "--pid", pid, "--yes")
	if r.code != 0 {
		t.Fatalf("destroy --yes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "Destroyed 5 of 5 sockets.") || strings.Count(r.stdout, "\ndestroyed  ") != 5 {
		t.Errorf("destroy --yes output:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "does not close file descriptors") {
		t.Errorf("destroy --yes does not explain that fds stay open:\n%s", r.stdout)
	}
	if got := kernelSockets(t, h, ""); len(got) != 0 {
		t.Errorf("after destroy the kernel still has %d of the holder's CLOSE_WAIT sockets: %v", len(got), got)
	}
	probes := h.Probe()
	if len(probes) != 4 {
		t.Errorf("holder probed %d connections, want its 4 accepted ones", len(probes))
	}
	for remote, p := range probes {
		if p.Write != "ECONNABORTED" {
			t.Errorf("after destroy, the holder's write to %v: %s, want ECONNABORTED (read: %s)", remote, p.Write, p.Read)
		}
	}
	if got := kernelSockets(t, bystander, ""); len(got) != 1 {
		t.Errorf("another process's CLOSE_WAIT socket was touched: %d left of 1", len(got))
	}

	// Nothing left: a second run says so and succeeds.
	r = run(t, nil, "destroy", "--pid", pid, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to destroy") {
		t.Errorf("second destroy: exit %d\n%s", r.code, r.stdout)
	}
}

func TestDestroyNeedsFilterAndPrivilege(t *testing.T) {
	needRoot(t)
	h := cwtest.Start(t, cwtest.Spec{Unread: 2})
	port := strconv.Itoa(int(h.Listen.Port()))

	r := run(t, nil, "destroy", "--yes")
	if r.code != 3 || !strings.Contains(r.stderr, "needs a filter") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("destroy --yes without a filter: exit %d, stderr %q; want exit 3 and one line", r.code, r.stderr)
	}
	r = run(t, nil, "destroy", "--netns", "cwtest-no-such-ns")
	if r.code != 3 || !strings.Contains(r.stderr, "cwtest-no-such-ns") {
		t.Errorf("destroy --netns unknown: exit %d, stderr %q", r.code, r.stderr)
	}

	// As nobody: the sockets are listed (no privilege needed), the kernel
	// refuses to destroy them, and closewait says why in one line.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r = run(t, nobody, "destroy", "--port", port, "--yes")
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(l, "closewait: note: ") {
			errs = append(errs, l)
		}
	}
	if r.code != 3 || len(errs) != 1 || !strings.Contains(errs[0], "CAP_NET_ADMIN") {
		t.Errorf("unprivileged destroy: exit %d, errors %q; want exit 3 and one line naming CAP_NET_ADMIN\n%s", r.code, errs, r.stdout)
	}
	if !strings.Contains(r.stdout, "Destroying 2 CLOSE_WAIT sockets:") || !strings.Contains(r.stdout, "Destroyed 0 of 2") {
		t.Errorf("unprivileged destroy output:\n%s", r.stdout)
	}
	r = run(t, nobody, "destroy", "--port", port, "--yes", "--json")
	dj := destroyJSON(t, r)
	if r.code != 3 || dj.DryRun || dj.Selected != 2 || dj.Destroyed != 0 || dj.Failed != 2 || !strings.Contains(r.stderr, "CAP_NET_ADMIN") {
		t.Errorf("unprivileged destroy --json: exit %d %+v\n%s", r.code, dj, r.stderr)
	}
	if got := kernelSockets(t, h, ""); len(got) != 2 {
		t.Errorf("an unprivileged destroy changed the kernel: %d of 2 sockets left", len(got))
	}
}
