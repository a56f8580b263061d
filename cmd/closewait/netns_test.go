package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
)

type nsSock struct {
	State       string `json:"state"`
	Local       string `json:"local"`
	Remote      string `json:"remote"`
	NetNS       uint64 `json:"netns"`
	NotAccepted bool   `json:"not_accepted"`
	Owners      []struct {
		PID int `json:"pid"`
		FD  int `json:"fd"`
	} `json:"owners"`
}

func socketsJSON(t *testing.T, args ...string) []nsSock {
	t.Helper()
	r := run(t, nil, append([]string{"sockets", "--json"}, args...)...)
	var out []nsSock
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("sockets --json %v: %v, exit %d\n%s%s", args, err, r.code, r.stdout, r.stderr)
	}
	return out
}

func TestNetNSHolderFoundLabelledFilteredDestroyed(t *testing.T) {
	name := cwtest.NewNetNS(t)
	ino, err := netns.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	h := cwtest.Start(t, cwtest.Spec{NetNS: name, ReadEOF: 1, Unread: 2, NotAccepted: 1})
	root := cwtest.Start(t, cwtest.Spec{Unread: 1})
	pid := strconv.Itoa(h.PID)

	// The default run reads every namespace: the holder's sockets are found,
	// labelled with the namespace's inode and attributed to the holder.
	socks := socketsJSON(t, "--pid", pid)
	if len(socks) != 4 {
		t.Fatalf("sockets --pid %s: %d sockets, want the holder's 4 in %s: %+v", pid, len(socks), name, socks)
	}
	for _, s := range socks {
		if s.NetNS != ino || len(s.Owners) != 1 || s.Owners[0].PID != h.PID || s.State != "CLOSE_WAIT" {
			t.Errorf("socket %+v: want netns %d and owner %d", s, ino, h.PID)
		}
	}

	// --netns NAME, the inode and net:[INODE] select that namespace and nothing else.
	for _, arg := range []string{name, strconv.FormatUint(ino, 10), "net:[" + strconv.FormatUint(ino, 10) + "]"} {
		socks = socketsJSON(t, "--netns", arg)
		if len(socks) != 4 {
			t.Errorf("--netns %s: %d sockets, want the 4 of the fresh namespace", arg, len(socks))
		}
		for _, s := range socks {
			if s.NetNS != ino || len(s.Owners) != 1 || s.Owners[0].PID != h.PID {
				t.Errorf("--netns %s: socket %+v", arg, s)
			}
		}
	}
	for _, s := range socketsJSON(t, "--pid", strconv.Itoa(root.PID)) {
		if s.NetNS == ino {
			t.Errorf("root-namespace holder's socket labelled with %s's inode: %+v", name, s)
		}
	}

	// The table names the namespace; the report attributes the holder.
	r := run(t, nil, "sockets", "--netns", name)
	if !strings.Contains(r.stdout, "netns:["+strconv.FormatUint(ino, 10)+"]("+name+")") {
		t.Errorf("table does not name the namespace:\n%s", r.stdout)
	}
	rep := reportJSON(t, run(t, nil, "--json", "--pid", pid))
	if p := findProc(rep, h.PID); p == nil || p.CloseWait != 4 || p.NotAccepted != 1 || len(p.NetNS) != 1 || p.NetNS[0] != ino {
		t.Errorf("report of the holder in %s: %+v, want 4 CLOSE_WAIT, 1 not accepted, netns [%d]", name, p, ino)
	}

	// watch --netns reads that namespace alone: its summary counts the
	// holder's 4 and nothing of the root namespace.
	r = run(t, nil, "watch", "--json", "-n", "1", "--netns", name)
	var tick struct {
		Summary struct {
			CloseWait *int `json:"close_wait"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &tick); err != nil || tick.Summary.CloseWait == nil || *tick.Summary.CloseWait != 4 {
		t.Errorf("watch --json -n 1 --netns %s: %v, want close_wait 4 (exit %d)\n%s%s", name, err, r.code, r.stdout, r.stderr)
	}

	// destroy opens its netlink socket inside the namespace.
	r = run(t, nil, "destroy", "--netns", name, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "Destroyed 4 of 4 sockets.") {
		t.Fatalf("destroy --netns %s --yes: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
	}
	if got := kernelSockets(t, h, netns.RunDir+"/"+name); len(got) != 0 {
		t.Errorf("after destroy, %d CLOSE_WAIT sockets left in %s", len(got), name)
	}
	for remote, p := range h.Probe() {
		if p.Write != "ECONNABORTED" {
			t.Errorf("holder's write to %v after destroy: %s, want ECONNABORTED", remote, p.Write)
		}
	}
	if got := kernelSockets(t, root, ""); len(got) != 1 {
		t.Errorf("destroy --netns touched the root namespace: %d of 1 left", len(got))
	}
}
