package report

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/diagnose"
)

func TestPeekOutput(t *testing.T) {
	p := &diagnose.ProcessReport{PID: 7, Runtime: "python", Findings: []diagnose.Finding{
		{Cause: "pool-idle", Direction: "outbound", Remote: "127.0.0.1:5432", Count: 6},
		{Cause: "abandoned-unread", Direction: "inbound", LocalPort: 25, Count: 3},
		{Cause: "missing-close", Direction: "inbound", LocalPort: 80, Count: 2},
	}}
	peeks := map[int]Peek{
		0: {Socket: "127.0.0.1:40000->127.0.0.1:5432", Unread: 58, Data: []byte("FATAL: terminating connection due to idle-session timeout\n")},
		1: {Socket: "127.0.0.1:25->127.0.0.1:41000", Unread: 9, Err: errors.New("peek: pidfd_getfd process 7 fd 4: no permission")},
		9: {Socket: "ignored"},
	}
	tests := []struct {
		name string
		i    int
		want *JSONPeeked
	}{
		{"text", 0, &JSONPeeked{Socket: "127.0.0.1:40000->127.0.0.1:5432", Bytes: 58, Text: `FATAL: terminating connection due to idle-session timeout\n`, Note: PeekNote}},
		{"error", 1, &JSONPeeked{Socket: "127.0.0.1:25->127.0.0.1:41000", Bytes: 9, Note: PeekNote, Error: "peek: pidfd_getfd process 7 fd 4: no permission"}},
		{"not peeked", 2, nil},
	}
	jp := BuildJSONProcess(p)
	AddPeeks(&jp, peeks)
	for _, tt := range tests {
		t.Run("json "+tt.name, func(t *testing.T) {
			got := jp.Findings[tt.i].Peeked
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Errorf("peeked %+v, want %+v", got, tt.want)
			}
		})
	}

	var b bytes.Buffer
	if err := WriteExplain(&b, p, ExplainOptions{Peeks: peeks}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"     Peeked (application data, read with MSG_PEEK and left unread):\n" +
			`       the peer sent, unread: "FATAL: terminating connection due to idle-session timeout\n"` + "\n" +
			"       58 bytes unread on 127.0.0.1:40000->127.0.0.1:5432\n",
		"     Peeked: could not read 127.0.0.1:25->127.0.0.1:41000: peek: pidfd_getfd process 7 fd 4: no permission\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "Peeked"); n != 2 {
		t.Errorf("%d Peeked lines, want 2:\n%s", n, out)
	}
}
