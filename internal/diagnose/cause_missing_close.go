package diagnose

import (
	"fmt"

	"github.com/closewait/closewait/internal/snapshot"
)

// CauseMissingClose: the app read up to the peer's FIN and never closed.
const CauseMissingClose = "missing-close"

var _ = register(&Cause{
	ID:    CauseMissingClose,
	Title: "read to EOF and never closed",
	Help: "Recv-Q 0: the application read up to the EOF (its read returned 0) and never called `close()`. " +
		"The bug is on the EOF or error path of the code that reads the socket: a handler that returns early, an exception that skips the close. " +
		"Next: find the code that reads these connections (the listening port or the remote names the component) and close the socket on every path: `defer`, `finally`, `with`, try-with-resources.",
	NeedsRecvQ: true,
	rank:       10,
	order:      20,
	socket:     func(s *snapshot.Socket) bool { return s.RecvQ == 0 },
	evidence: func(v *partView) []string {
		return []string{fmt.Sprintf("%s %s Recv-Q 0: the app read up to EOF (the peer's FIN) and did not close", v.of, v.have)}
	},
	fix: closeFix,
})

// closeFix is how to close a socket on its EOF and error paths: a server's
// accepted connections or a client's.
func closeFix(q *adviceQuery) []string {
	if q.inbound {
		return closeInbound.lines(q)
	}
	return closeOutbound.lines(q)
}

// closeInbound closes accepted connections on every path of the handler.
var closeInbound = byRuntime{
	"java":   {"close the accepted socket on every path of the handler: try (Socket s = server.accept()) { … } (try-with-resources) or close() in finally; read() == -1 means the peer is gone: close"},
	"node":   {"in the 'connection' handler call socket.end() on 'end' and socket.destroy() on 'error' and 'timeout'; a net.Server created with allowHalfOpen: true must end the socket itself"},
	"python": {"close the accepted socket on every path: with conn: … ; recv() returning b'' means the peer closed (asyncio: writer.close() and await writer.wait_closed() when read() returns b'')"},
	"go":     {"defer conn.Close() right after Accept succeeds, so a handler returning on io.EOF or an error closes it"},
	"ruby":   {"close the accepted socket in ensure (or use a block that closes it); read returning nil or raising EOFError means the peer closed"},
	"dotnet": {"using var client = listener.AcceptTcpClient(); (or a using block) so every path of the handler disposes it; Read returning 0 means the peer closed"},
	"other":  {"close the accepted descriptor on the EOF path (read returns 0) and on every error path of the handler"},
}

// closeOutbound closes a client's connections and responses.
var closeOutbound = byRuntime{
	"java": {
		"close every connection on every path: try (Socket s = new Socket(host, port)) { … }; read() == -1 means the server is gone: close",
		"HTTP clients: close every response, try (CloseableHttpResponse r = client.execute(req)) { EntityUtils.consume(r.getEntity()); }",
	},
	"node": {
		"destroy client sockets on 'end', 'error' and 'timeout'",
		"HTTP: always consume the response (res.resume() when the body is not needed) so the agent can reuse or close it",
	},
	"python": {
		"with socket.create_connection(addr) as s: … ; recv() returning b'' means the server closed: close",
		"requests: with session.get(url, stream=True) as r: … closes the response; close the Session when done",
	},
	"go": {
		"defer conn.Close() right after Dial succeeds, so returning on io.EOF or an error closes it",
		"HTTP clients: defer resp.Body.Close() on every response, and drain it (io.Copy(io.Discard, resp.Body)) to reuse the connection",
	},
	"ruby":   {"TCPSocket.open(host, port) { |s| … } (the block form closes it), or close in ensure; Net::HTTP.start(host, port) { |http| … } closes the connection"},
	"dotnet": {"dispose each HttpResponseMessage (using var resp = await client.SendAsync(req);) and each TcpClient (using blocks)"},
	"other":  {"close the descriptor on the EOF path (read returns 0) and on every error path"},
}
