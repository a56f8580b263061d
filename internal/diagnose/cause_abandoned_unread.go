package diagnose

import (
	"fmt"

	"github.com/closewait/closewait/internal/snapshot"
)

// CauseAbandonedUnread: nobody read the socket since the peer's FIN.
const CauseAbandonedUnread = "abandoned-unread"

var _ = register(&Cause{
	ID:    CauseAbandonedUnread,
	Title: "never read after the peer closed",
	Help: "Recv-Q 1 or more on inbound connections, or more than 1 on outbound ones that do not look like a server's goodbye: nobody has read the socket since the FIN. " +
		"Either the socket was forgotten (stored and never used again), or the threads that own it are blocked elsewhere (a lock, a slow dependency, a full pool). " +
		"closewait reads the process's threads to tell them apart: when most wait on a lock (futex), the advice is about the lock and the pool (a thread dump, the lock's holder, timeouts on the work); " +
		"when they sit idle in accept or poll, it is about the forgotten socket (close it on every path).",
	NeedsRecvQ: true,
	rank:       10,
	order:      100, // the rest: whatever no other socket cause takes
	socket:     func(*snapshot.Socket) bool { return true },
	evidence: func(v *partView) []string {
		e := fmt.Sprintf("%s %s Recv-Q ≥ 1: the app never read them after the peer closed (the FIN is still queued)", v.of, v.have)
		if v.withData > 0 {
			e += fmt.Sprintf("; %d still hold unread data (up to %s)", v.withData, bytesText(v.maxQ))
		}
		out := []string{e}
		switch {
		case v.blocked:
			out = append(out, "most of its threads wait on a lock or a condition (futex), not on these sockets: the workers that should read them are blocked")
		case v.inbound:
			out = append(out, "the connections were accepted and then forgotten, or the workers holding them are blocked elsewhere")
		default:
			out = append(out, "the app stopped reading the responses: a stuck caller, or a pooled connection with an unread body")
		}
		return out
	},
	steps: func(q *adviceQuery) []string {
		if q.blocked {
			return []string{"take a thread dump (the commands below) and find what the blocked threads wait for (the lock or pool) and which thread holds it: that thread is the bug, not the sockets"}
		}
		return nil
	},
	fix: func(q *adviceQuery) []string {
		if q.blocked {
			return blockedFix.lines(q)
		}
		out := []string{"every socket needs an owner that reads it to EOF and closes it: find where these sockets are kept (a map, a queue, a pool) and never served"}
		return append(out, closeFix(q)...)
	},
})

// blockedFix is how to keep workers from blocking while they hold sockets.
var blockedFix = byRuntime{
	"java": {
		"release or shorten the lock the workers wait on (its holder is in the thread dump: \"- locked <0x…>\" / \"waiting to lock <0x…>\"); use lock.tryLock(timeout, unit) instead of an unbounded lock()",
		"bound the work: timeouts on every call a worker makes (JDBC Statement.setQueryTimeout, HTTP client connect/read timeouts), and a bounded queue in front of the pool that rejects when full",
	},
	"python": {
		"release or shorten the lock the workers wait on (py-spy dump shows the holder); use lock.acquire(timeout=…) instead of an unbounded acquire",
		"bound the work: timeouts on every call a worker makes (requests timeout=…, socket.settimeout), and a bounded queue in front of the pool",
	},
	"ruby": {
		"release or shorten the lock the workers wait on (rbspy dump shows the holder); Timeout on every call a worker makes",
	},
	"dotnet": {
		"release or shorten the lock the workers wait on (dotnet-stack shows the holder); Monitor.TryEnter(obj, timeout) or SemaphoreSlim.WaitAsync(timeout) instead of an unbounded lock",
		"bound the work: CancellationToken timeouts on every call a worker makes",
	},
	"other": {
		"find the lock the workers wait on and its holder (gdb: thread apply all bt; a thread in pthread_mutex_lock waits, the one inside the critical section holds it); bound the wait (pthread_mutex_timedlock) and every call made while holding it",
	},
}
