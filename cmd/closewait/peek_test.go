package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/report"
)

// TestExplainPeek: a holder never read what its peers sent before their
// FIN; explain --peek shows it under the finding, marked as application
// data, and leaves it unread; without --peek nothing is read.
func TestExplainPeek(t *testing.T) {
	line := "ERROR 1: request aborted\r\n\x00"
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 6, Unread: 6, UnreadData: []byte(line)})
	pid := strconv.Itoa(h.PID)

	p, r := explainJSON(t, h.PID)
	for _, f := range p.Findings {
		if f.Peeked != nil {
			t.Errorf("explain without --peek read a socket: %+v", f.Peeked)
		}
	}
	if strings.Contains(r.stdout, "peeked") {
		t.Errorf("explain --json without --peek mentions peeked:\n%s", r.stdout)
	}

	p, r = explainJSON(t, h.PID, "--peek")
	if r.code == 3 {
		t.Fatalf("explain --peek: exit 3: %s", r.stderr)
	}
	f := findCause(p, "abandoned-unread")
	if f == nil {
		t.Fatalf("findings %v, want abandoned-unread", causes(p))
	}
	pk := f.Peeked
	if pk == nil {
		t.Fatalf("abandoned-unread finding has no peeked object: %+v", f)
	}
	if strings.Contains(pk.Error, "no permission") || strings.Contains(pk.Error, "not supported") {
		t.Skipf("cannot peek here: %s", pk.Error)
	}
	want := `ERROR 1: request aborted\r\n\x00`
	if pk.Error != "" || pk.Text != want || pk.Bytes != len(line) || pk.Note != report.PeekNote {
		t.Errorf("peeked %+v, want text %q, %d bytes, note %q", pk, want, len(line), report.PeekNote)
	}
	if !strings.Contains(pk.Socket, "->") || !h.RemotePorts("unread")[mustPort(t, pk.Socket[strings.Index(pk.Socket, "->")+2:])] {
		t.Errorf("peeked socket %q is not one of the holder's unread sockets", pk.Socket)
	}
	if mc := findCause(p, "missing-close"); mc == nil || mc.Peeked != nil {
		t.Errorf("missing-close finding %+v: want one, without peeked bytes (nothing unread)", mc)
	}

	r = run(t, nil, "explain", pid, "--peek")
	for _, s := range []string{
		"Peeked (application data, read with MSG_PEEK and left unread):",
		`the peer sent, unread: "` + want + `"`,
		fmt.Sprintf("%d bytes unread on %s", len(line), ""),
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("explain --peek lacks %q:\n%s", s, r.stdout)
		}
	}

	// Peeking left every byte for the holder.
	for port, got := range h.ReadAll() {
		if h.RemotePorts("unread")[port] && string(got) != line {
			t.Errorf("after --peek the holder read %q from peer port %d, want %q", got, port, line)
		}
	}
}

func mustPort(t *testing.T, addr string) uint16 {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	n, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return uint16(n)
}
