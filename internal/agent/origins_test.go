package agent

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/origins"
	"github.com/closewait/closewait/internal/symbolize"
)

// TestOriginsUnderProcess: with agent --trace, a process's details list its
// top five origins (worst first, as the report orders them) the way
// `closewait trace` prints them, deep Go dial stacks included, and no other
// process's; without origins for it, the page says none are recorded yet.
func TestOriginsUnderProcess(t *testing.T) {
	var r origins.Report
	dial := []string{"syscall.connect", "net.(*netFD).connect", "net.(*netFD).dial", "net.socket", "net.internetSocket",
		"net.(*sysDialer).doDialTCPProto", "net.(*sysDialer).doDialTCP", "net.(*sysDialer).dialTCP", "net.(*sysDialer).dialSingle",
		"net.(*sysDialer).dialSerial", "net.(*Dialer).DialContext", "net.Dial"}
	for i := 0; i < 6; i++ {
		o := origins.Origin{PID: 10, Comm: "svc", How: "connect", Count: 6 - i, Cause: "pool-idle"}
		for _, f := range dial {
			o.Frames = append(o.Frames, symbolize.Frame{Function: f, File: "/usr/lib/go/src/net/x.go", Line: 1, Module: "/usr/bin/svc"})
		}
		o.Frames = append(o.Frames, symbolize.Frame{Function: fmt.Sprintf("main.leak%d", i), File: "/src/svc/main.go", Line: 40 + i, Module: "/usr/bin/svc"})
		r.Origins = append(r.Origins, o)
	}
	r.Origins = append(r.Origins, origins.Origin{PID: 11, Comm: "other", How: "accept", Count: 9,
		Frames: []symbolize.Frame{{Function: "main.otherLeak", Module: "/usr/bin/other"}}})

	s := originsOf(&r, 10)
	if n := strings.Count(s, "svc (pid 10) connect"); n != maxOrigins {
		t.Errorf("%d origins of pid 10, want %d:\n%s", n, maxOrigins, s)
	}
	for i := 0; i < 6; i++ {
		if got, want := strings.Contains(s, fmt.Sprintf("main.leak%d /src/svc/main.go:%d", i, 40+i)), i < maxOrigins; got != want {
			t.Errorf("main.leak%d listed %v, want %v (the app's frame below a %d-frame dial stack)", i, got, want, len(dial))
		}
	}
	if strings.Contains(s, "main.otherLeak") || originsOf(&r, 12) != "" || originsOf(nil, 10) != "" {
		t.Errorf("origins of other processes listed")
	}

	for _, tt := range []struct {
		dd   detailData
		want string
	}{
		{detailData{rowData: rowData{PID: 10, Comm: "svc"}, Tracing: true, Origins: s}, `<pre class="origins"><code>1. svc (pid 10) connect`},
		{detailData{rowData: rowData{PID: 10, Comm: "svc"}, Tracing: true, Accepts: true}, "Origins: none recorded yet (agent --trace names the code that makes the sockets created from when it first sees the process).</p>"},
		{detailData{rowData: rowData{PID: 10, Comm: "svc"}, Tracing: true}, "Sockets made by accept() are not recorded now"},
		{detailData{rowData: rowData{PID: 10, Comm: "svc"}}, ""},
	} {
		var b bytes.Buffer
		if err := pageTemplate.Execute(&b, pageData{HasReport: true, Details: []detailData{tt.dd}}); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		if tt.want != "" && !strings.Contains(page, tt.want) {
			t.Errorf("page lacks %q", tt.want)
		}
		if !tt.dd.Tracing && strings.Contains(page, "origins") && strings.Contains(page, "Origins:") {
			t.Errorf("page without --trace mentions origins")
		}
	}
}
