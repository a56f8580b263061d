package diagnose

import (
	"fmt"

	"github.com/closewait/closewait/internal/snapshot"
)

// CauseNotAccepted: the connections wait in the accept queue of a listener
// whose process is not accepting.
const CauseNotAccepted = "not-accepted"

var _ = register(&Cause{
	ID:    CauseNotAccepted,
	Title: "never accepted (waiting in the accept queue)",
	Help: "Connections that reached CLOSE_WAIT while still in a listener's accept queue: the client gave up before the server called `accept()`. " +
		"They have no file descriptor, so no process owns them; closewait charges them to the process that owns the listener. " +
		"The server is stalled or overloaded: its accept loop is blocked or its workers are all busy (when its fd table is full, the cause is fd-exhausted instead). " +
		"Next: a thread dump; the listener's Recv-Q in `ss -ltn` is the queue length.",
	rank:   10,
	order:  0,
	socket: func(s *snapshot.Socket) bool { return s.NotAccepted },
	evidence: func(v *partView) []string {
		out := []string{fmt.Sprintf("%s %s in the accept queue: the peers gave up before the app called accept(), so they have no fd", v.of, v.wait)}
		return append(out, v.listeners...)
	},
	fix: func(q *adviceQuery) []string { return notAcceptedFix.lines(q) },
})

// notAcceptedFix is how to keep a server accepting.
var notAcceptedFix = byRuntime{
	"java":   {"the accept loop is stalled or the worker pool is exhausted: find the thread in ServerSocket.accept / the acceptor, and what the workers wait on (thread dump above)"},
	"node":   {"the event loop is blocked (a long synchronous call): the diagnostic report's JavaScript stack shows where"},
	"python": {"the accepting thread or event loop is blocked: py-spy dump shows where; if every worker is busy, raise the worker count (gunicorn --workers/--threads)"},
	"go":     {"the goroutine calling Accept is blocked or gone (goroutine dump above); keep the accept loop free of work, hand each connection to its own goroutine"},
	"ruby":   {"every worker is busy or blocked: rbspy dump shows where; raise workers/threads (puma -w, -t)"},
	"dotnet": {"the accept loop is blocked: dotnet-stack report shows where; accept asynchronously (AcceptTcpClientAsync)"},
	"other":  {"the process stopped calling accept(): find the thread that should (native stacks above) and what it waits on"},
}
