// Command cwhost builds a busy host on loopback for the closewait benchmark:
// N CLOSE_WAIT sockets held by as many holder processes as the per-process
// fd limit requires, ESTABLISHED pairs, and idle processes holding non-socket
// fds. It prints progress, then the pids and "READY", and holds everything
// until SIGTERM/SIGINT or stdin EOF; then it kills every child by pid.
//
// Usage:
//
//	cwhost [-closewait 100000] [-estab 1000] [-idle-procs 200] [-idle-fds 200] [-churn 0] [flags]
//
// With -churn N, once READY a churn process makes N new CLOSE_WAIT sockets a
// second on 127.0.0.8 and closes its oldest beyond -churn-hold (1000), so the
// count stays flat while sockets keep entering and leaving CLOSE_WAIT.
//
// Child processes are the same binary re-executed with a role as the first
// argument (holder, client, estab, idle, churn). "cwhost jsoncount FILE" is a helper
// for the benchmark script: it counts the sockets in `closewait sockets
// --json` output or reads the totals of `closewait --json`.
//
// Only loopback addresses (127.0.0.0/8) are used. Every client end gets its
// own (address, port) pair, so no 4-tuple is ever reused, whatever happens to
// the closed client ends (tcp_max_tw_buckets overflow just forgets them).
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		args := os.Args[2:]
		switch os.Args[1] {
		case "holder":
			os.Exit(runHolder(args))
		case "client":
			os.Exit(runClient(args))
		case "estab":
			os.Exit(runEstab(args))
		case "idle":
			os.Exit(runIdle(args))
		case "churn":
			os.Exit(runChurn(args))
		case "jsoncount":
			os.Exit(runJSONCount(args))
		case "help", "-h", "-help", "--help":
			// fall through to the controller's flag usage
		}
	}
	if err := runController(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cwhost: FAILED:", err)
		fmt.Println("FAILED", err)
		os.Exit(1)
	}
}
