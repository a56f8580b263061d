package diagnose

// The advice below is data: per runtime, the commands that show where the
// sockets are held (with the pid filled in), and per cause and runtime, the
// fix in that runtime's idiom. Placeholders: {pid}, {user} (sudo -u prefix),
// {ports} (the process's listening ports), {evict} (an idle eviction below
// the server's idle timeout).

// stackSteps are the commands that show which code holds the sockets.
var stackSteps = map[string][]string{
	"java": {
		`{user}jcmd {pid} Thread.print -l | awk -v RS= '/java\.net\.Socket|SocketInputStream|NioSocketImpl|sun\.nio\.ch\.|SocketChannel|org\.apache\.http|HikariPool/'   # whole stacks of threads in socket code (or: {user}jstack -l {pid})`,
		`{user}jcmd {pid} Thread.print | grep -c 'java.lang.Thread.State: BLOCKED'   # threads blocked on a lock`,
	},
	"node": { // started with --report-on-signal
		`kill -USR2 {pid}   # it runs with --report-on-signal: writes report.*.json to its cwd (JavaScript stack, libuv handles); SIGUSR1 would only open the inspector and print no stacks`,
		`jq '.libuv[] | select(.type=="tcp")' report.*.json   # the TCP handles in the report, with their addresses`,
	},
	"node-noreport": { // its command line lacks --report-on-signal
		`tr '\0' '\n' < /proc/{pid}/environ | grep NODE_OPTIONS   # only if this shows --report-on-signal may you send kill -USR2 {pid}: without the flag SIGUSR2 TERMINATES node`,
		`node inspect -p {pid}   # no restart: SIGUSR1 opens the inspector (it prints nothing itself); then at debug> run: exec("process.report.writeReport('/tmp/report-{pid}.json')")`,
		`restart it with node --report-on-signal --report-directory=/tmp app.js (or NODE_OPTIONS=--report-on-signal); then kill -USR2 {pid} writes the diagnostic report`,
	},
	"python": {
		`py-spy dump --pid {pid}   # every thread's Python stack (pip install py-spy); add --locals to see the socket variables`,
	},
	"go": {
		`curl -s 'http://127.0.0.1:PORT/debug/pprof/goroutine?debug=2' | awk -v RS= '/net\.\(\*conn\)|net\/http|\(\*netFD\)/'   # where it serves net/http/pprof{ports}`,
		`kill -QUIT {pid}   # last resort: prints every goroutine to its stderr, but then the process EXITS (GOTRACEBACK)`,
	},
	"ruby": {
		`rbspy dump --pid {pid}   # every thread's Ruby stack`,
		`kill -CONT {pid}   # with the sigdump gem loaded (require 'sigdump/setup'): writes /tmp/sigdump-{pid}.log`,
	},
	"dotnet": {
		`dotnet-stack report -p {pid}   # managed stacks of every thread (dotnet tool install -g dotnet-stack)`,
	},
	"other": {
		`gdb -p {pid} -batch -ex 'thread apply all bt'   # native stacks of every thread (pauses it briefly)`,
		`eu-stack -p {pid}   # the same without gdb (elfutils)`,
	},
}

// fixCloseOnEOF is how to close a socket on the EOF and error paths.
var fixCloseOnEOF = map[string][]string{
	"java": {
		"close on every path: try (Socket s = server.accept()) { … } (try-with-resources) or close() in finally; read() == -1 means the peer is gone: close",
		"HTTP clients: close every response, try (CloseableHttpResponse r = client.execute(req)) { EntityUtils.consume(r.getEntity()); }",
	},
	"node": {
		"call socket.end() on 'end' and socket.destroy() on 'error' and 'timeout'; a net.Server created with allowHalfOpen: true must end the socket itself",
		"HTTP: always consume the response (res.resume() when the body is not needed) so the agent can reuse or close it",
	},
	"python": {
		"use with: with conn: … / with socket.create_connection(addr) as s: …; recv() returning b'' means the peer closed: close",
		"requests: with session.get(url, stream=True) as r: … closes the response; close the Session when done",
	},
	"go": {
		"defer conn.Close() right after Accept or Dial succeeds, so returning on io.EOF or an error closes it",
		"HTTP clients: defer resp.Body.Close() on every response, and drain it (io.Copy(io.Discard, resp.Body)) to reuse the connection",
	},
	"ruby": {
		"use the block form, TCPSocket.open(host, port) { |s| … }, or close in ensure; read returning nil/EOFError means the peer closed",
	},
	"dotnet": {
		"using var client = listener.AcceptTcpClient(); (or using blocks) so every path disposes it; Read returning 0 means the peer closed",
		"HttpClient: dispose each HttpResponseMessage (using var resp = await client.SendAsync(req);)",
	},
	"other": {
		"close the descriptor on the EOF path (read returns 0) and on every error path",
	},
}

// fixPoolIdle is how to make a client pool drop connections the server closed.
var fixPoolIdle = map[string][]string{
	"java": {
		"Apache HttpClient 5: HttpClients.custom().evictIdleConnections(TimeValue.ofSeconds({evict})) and ConnectionConfig.custom().setValidateAfterInactivity(TimeValue.ofSeconds(1)) (4.x: evictIdleConnections({evict}, SECONDS), setValidateAfterInactivity(1000))",
		"HikariCP: idleTimeout and maxLifetime below the database's idle timeout (less than {evict} s), keepaliveTime to test idle connections",
	},
	"node": {
		"http.Agent({ keepAlive: true, timeout: {evict}000 }) (agentkeepalive: freeSocketTimeout; undici: keepAliveTimeout) so idle sockets close before the server drops them",
	},
	"python": {
		"urllib3/requests notice a dropped connection only when they take it from the pool again: keep pool_maxsize small, and session.close() / PoolManager.clear() after bursts; set the server's keepalive longer than the client's use",
	},
	"go": {
		"http.Transport{IdleConnTimeout: {evict} * time.Second} (and MaxIdleConnsPerHost); database/sql: db.SetConnMaxIdleTime({evict} * time.Second)",
	},
	"ruby": {
		"net-http-persistent: http.idle_timeout = {evict}; connection_pool: reload or shutdown idle connections",
	},
	"dotnet": {
		"SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromSeconds({evict}), PooledConnectionLifetime = TimeSpan.FromMinutes(5) }",
	},
	"other": {
		"evict pooled connections idle longer than {evict} s, or validate a connection before reusing it",
	},
}

// fixNotAccepted is how to keep a server accepting.
var fixNotAccepted = map[string][]string{
	"java":   {"the accept loop is stalled or the worker pool is exhausted: find the thread in ServerSocket.accept / the acceptor, and what the workers wait on (thread dump above)"},
	"node":   {"the event loop is blocked (a long synchronous call): the diagnostic report's JavaScript stack shows where"},
	"python": {"the accepting thread or event loop is blocked: py-spy dump shows where; raise the worker count (gunicorn --workers/--threads)"},
	"go":     {"the goroutine calling Accept is blocked or gone (goroutine dump above); keep the accept loop free of work, hand each connection to its own goroutine"},
	"ruby":   {"every worker is busy or blocked: rbspy dump shows where; raise workers/threads (puma -w, -t)"},
	"dotnet": {"the accept loop is blocked: dotnet-stack report shows where; accept asynchronously (AcceptTcpClientAsync)"},
	"other":  {"the process stopped calling accept(): find the thread that should (native stacks above) and what it waits on"},
}

// fixes picks the fix table of a cause.
var fixes = map[string]map[string][]string{
	"missing-close":    fixCloseOnEOF,
	"abandoned-unread": fixCloseOnEOF,
	"pool-idle":        fixPoolIdle,
	"not-accepted":     fixNotAccepted,
	"growing":          fixCloseOnEOF,
}

// advice fills placeholders in the lines of table[runtime] (or table["other"]).
func advice(table map[string][]string, runtime string, f filler) []string {
	lines, ok := table[runtime]
	if !ok {
		lines = table["other"]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = f.fill(l)
	}
	return out
}
