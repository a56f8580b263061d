// Command leakyserver is a line-based TCP echo server with a deliberate
// CLOSE_WAIT leak, instrumented with leakcheck so that the leak's report
// points at the line that causes it.
//
// Run it and talk to it:
//
//	go run ./examples/leakyserver
//	printf 'hello\n' | nc -q0 127.0.0.1 7070    # the session leaks
//	printf 'quit\n'  | nc -q0 127.0.0.1 7070    # the session is closed
//	curl -s 127.0.0.1:7071/debug/closewait
//
// or let it run a few sessions against itself and print the report:
//
//	go run ./examples/leakyserver -demo
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/closewait/closewait/leakcheck"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7070", "echo server `address`")
	debug := flag.String("debug", "127.0.0.1:7071", "`address` serving /debug/closewait (empty: none)")
	interval := flag.Duration("check", 10*time.Second, "leak check interval (logs when leaks grow)")
	demo := flag.Bool("demo", false, "serve on a free loopback port, run a few sessions against it, print the report and exit")
	flag.Parse()

	tr := leakcheck.New(&leakcheck.Options{Logger: slog.Default()})
	if *demo {
		if err := runDemo(tr); err != nil {
			log.Fatal(err)
		}
		return
	}
	go tr.Watch(context.Background(), *interval)
	if *debug != "" {
		mux := http.NewServeMux()
		mux.Handle("/debug/closewait", tr.Handler())
		go func() { log.Fatal(http.ListenAndServe(*debug, mux)) }()
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("echo server on %s, report on http://%s/debug/closewait", ln.Addr(), *debug)
	log.Fatal(serve(tr.Listener(ln)))
}

// serve accepts connections on ln and runs a session on each.
func serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handleConn(c)
	}
}

// handleConn echoes each line back in upper case until the client sends
// "quit".
//
// The bug: when the client goes away without "quit", ReadString returns
// io.EOF and handleConn returns without closing c. The socket stays in
// CLOSE_WAIT, with its file descriptor, until the process exits. The fix
// is a defer c.Close() at the top.
func handleConn(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // BUG: c is never closed on this path
		}
		if strings.TrimSpace(line) == "quit" {
			c.Close()
			return
		}
		if _, err := c.Write([]byte(strings.ToUpper(line))); err != nil {
			c.Close()
			return
		}
	}
}

// runDemo serves on a free loopback port, runs three sessions that end
// with EOF (leaks) and one that sends "quit", waits until the kernel shows
// the leaks and prints the report.
func runDemo(tr *leakcheck.Tracker) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go serve(tr.Listener(ln))
	for i, last := range []string{"bye", "bye", "bye", "quit"} {
		if err := session(ln.Addr().String(), fmt.Sprintf("hello %d", i), last); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep := tr.Report()
		// Done when the three EOF sessions are leaked and the "quit" one
		// is closed (for an instant it too is in CLOSE_WAIT: its FIN
		// arrives before handleConn reads "quit").
		if eofLeaks(rep) >= 3 && tr.Len() == 3 || time.Now().After(deadline) {
			return rep.WriteText(os.Stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// session sends two lines, reads the echoes and closes its side.
func session(addr string, lines ...string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, l := range lines {
		if _, err := fmt.Fprintln(c, l); err != nil {
			return err
		}
		if l == "quit" {
			break
		}
		if _, err := r.ReadString('\n'); err != nil {
			return err
		}
	}
	return nil
}

func eofLeaks(rep *leakcheck.Report) int {
	n := 0
	for _, g := range rep.Groups {
		n += g.Causes[leakcheck.CauseMissingClose]
	}
	return n
}
