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
