//go:build linux

package main

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

// readStringLine returns the line number of handleConn's ReadString call
// in main.go: the line the report must point at.
func readStringLine(t *testing.T) int {
	t.Helper()
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, "line, err := r.ReadString('\\n')") {
			return i + 1
		}
	}
	t.Fatal("ReadString line not found in main.go")
	return 0
}

func TestReportNamesLeakingHandler(t *testing.T) {
	tr := leakcheck.New(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(tr.Listener(ln))
	addr := ln.Addr().String()

	for _, last := range []string{"bye", "bye", "quit"} {
		if err := session(addr, "hello", last); err != nil {
			t.Fatal(err)
		}
	}

	// Wait on kernel state: the two sessions that ended with EOF are in
	// CLOSE_WAIT once handleConn has read the EOF; the "quit" one is gone.
	// Judge the report by what it checked itself (Tracked), not by a later
	// tr.Len(): the "quit" handler may close between the two.
	var rep *leakcheck.Report
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep = tr.Report()
		if rep.CloseWait >= 2 && eofLeaks(rep) >= 2 && rep.Tracked == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaks not seen in time (tracked %d):\n%s", tr.Len(), rep)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rep.CloseWait != 2 || len(rep.Groups) != 1 {
		t.Fatalf("want 2 leaks in one group:\n%s", rep)
	}
	g := rep.Groups[0]
	top := g.Stack[0]
	if !isMainFunc(top.Function, "handleConn") || !strings.HasSuffix(top.File, "leakyserver/main.go") || top.Line != readStringLine(t) {
		t.Fatalf("report points at %s, want main.handleConn at main.go:%d\n%s", top, readStringLine(t), rep)
	}
	if g.Origin != leakcheck.OriginReadError || g.Causes[leakcheck.CauseMissingClose] != 2 {
		t.Fatalf("origin %s causes %v", g.Origin, g.Causes)
	}
	if len(g.Created) == 0 || !isMainFunc(g.Created[0].Function, "serve") {
		t.Fatalf("created at %v, want main.serve", g.Created)
	}
}

// isMainFunc reports whether fn is this program's function name: "main.name"
// in the binary, import-path qualified in its test binary.
func isMainFunc(fn, name string) bool {
	return fn == "main."+name || fn == "github.com/closewait/closewait/examples/leakyserver."+name
}
