// Package leakcheck finds a Go program's own CLOSE_WAIT socket leaks and
// names the code that caused them.
//
// A socket is in CLOSE_WAIT when the peer has closed its side and the
// program has not yet called Close. The kernel keeps it (and the program
// keeps its file descriptor) until Close or process exit: a Close missing
// on an error or EOF path leaks one socket each time it is taken, until
// the process runs out of file descriptors. Seen from outside (closewait,
// ss), the leak has a process but no line of code; leakcheck supplies the
// line.
//
// # Wrapping
//
// A [Tracker] wraps the places where connections are born:
//
//	tr := leakcheck.New(nil)
//	ln = tr.Listener(ln)                         // accepted connections
//	srv.Serve(ln)                                // or tr.Serve(srv, ln)
//	dial := tr.Dialer(&net.Dialer{})             // dialed connections
//	client := &http.Client{Transport: tr.Transport(&http.Transport{})}
//
// Each tracked connection records when it was created, its last read and
// write, whether a read returned io.EOF, and stacks: where it was created,
// its first read, its latest failed read, and (through the client
// transport) the latest HTTP request that used it. Closing the connection
// removes it from the tracker. Connections are held weakly: one the
// program drops without Close is still closed by the runtime when
// collected, and leaves the tracker then.
//
// # Detection
//
// [Tracker.Report] asks the kernel, not a heuristic: for every tracked
// connection it reads struct tcp_info with getsockopt(TCP_INFO) on the
// connection's file descriptor and keeps those in CLOSE_WAIT. They are
// grouped by the most specific recorded stack that has frames outside the
// runtime, net, net/http, crypto/tls, bufio and leakcheck (see the Origin
// constants), with their count, direction, cause (CauseMissingClose when
// the program read the EOF, CauseAbandonedUnread when it never read after
// the FIN) and age. The time since the peer's FIN is tcp_info's
// tcpi_last_ack_recv. No privilege is needed: a process may always query
// its own sockets. Only Linux is supported; elsewhere the wrappers work
// but every check fails with [ErrNotSupported].
//
// # Surfaces
//
//   - [Tracker.Report] returns a [Report] value; [Report.WriteText] and
//     encoding/json render it.
//   - [Tracker.Handler] serves it over HTTP, text or JSON, to mount at
//     /debug/closewait.
//   - [Tracker.Watch] checks periodically and calls [Options.OnLeak]
//     and logs to [Options.Logger] when leaks appear.
//   - [VerifyNone] fails a test that leaves tracked connections in
//     CLOSE_WAIT.
//
// # Overhead
//
// Per connection: one small record, a lock on one of 16 shards at open and
// close, and a creation stack. Per read and write: two atomic operations
// (times come from a 50ms coarse clock, not time.Now). Per HTTP request through [Tracker.RoundTripper]: a stack
// capture and an httptrace hook. On amd64 stacks are captured by
// following frame pointers (a few ns per frame); elsewhere with
// runtime.Callers (~80 ns per frame). Stacks are kept as program counters
// and symbolized only by Report, for the leaked connections only.
// [Options.SampleRate] records stacks for one connection in N, or none.
// BenchmarkHTTP measures a keep-alive loopback HTTP exchange with and
// without the wrappers.
//
// # Limitations
//
// Only connections created through a wrapper are seen: connections of
// libraries that dial on their own (database drivers with their own
// dialer, for instance) need that library's dial hook wired to
// [Tracker.DialContext]. A wrapped connection is no longer a
// *net.TCPConn; use its NetConn method to reach the original. A socket
// enters CLOSE_WAIT the moment the FIN arrives, before the program has had
// a chance to read it: a young CLOSE_WAIT connection may be about to be
// closed, which is why [VerifyNone] retries for a grace period.
package leakcheck
