package diagnose

import (
	"fmt"
	"strings"
	"time"

	"github.com/closewait/closewait/internal/snapshot"
)

// CausePoolIdle: idle pooled connections that the server closed.
const CausePoolIdle = "pool-idle"

// Goodbye limits: a server's last message arrives with its FIN (their
// times within goodbyeWithFIN), after the connection was quiet for at least
// goodbyeQuiet, and is small (at most goodbyeMax bytes).
const (
	goodbyeWithFIN = 500  // ms
	goodbyeQuiet   = 500  // ms
	goodbyeMax     = 4096 // bytes
)

// isGoodbye reports whether an outbound socket's unread data is a server's
// goodbye: a short message that came with the FIN after a silence (a
// database's idle-session timeout error, SMTP 421, IMAP BYE, HTTP 408).
func isGoodbye(s *snapshot.Socket) bool {
	if s.Inbound() || s.RecvQ < 2 || s.RecvQ > goodbyeMax+1 || !s.HasInfo {
		return false
	}
	i := &s.Info
	d := int64(i.LastDataRecv) - int64(i.LastAckRecv)
	return d <= goodbyeWithFIN && d >= -goodbyeWithFIN && int64(i.LastDataSent)-int64(i.LastDataRecv) >= goodbyeQuiet
}

var _ = register(&Cause{
	ID:    CausePoolIdle,
	Title: "idle pooled connections the server closed",
	Help: "Outbound connections to one remote that a client pool (HTTP keep-alive, database, Redis) keeps idle after the server closed them at its own idle timeout. " +
		"Recognised by Recv-Q 1 (only the FIN unread), or by a goodbye: many servers send a last line before the FIN (a database's idle-session timeout error, SMTP 421, IMAP BYE, HTTP 408), " +
		"so Recv-Q is a small count, the same on each socket, and tcp_info shows the data arrived with the FIN after a silence. " +
		"The pool does not look at idle connections, so it notices only when it hands one out again. " +
		"closewait estimates the server's idle timeout from tcp_info and reports it as `remote_idle_timeout_seconds`. " +
		"Next: make the pool evict idle connections before the server does, within what the pool library allows; when the server's timeout is below that, validate connections before use or raise the server's timeout.",
	NeedsRecvQ: true,
	rank:       10,
	order:      30,
	socket: func(s *snapshot.Socket) bool {
		return !s.Inbound() && s.RecvQ == 1 || isGoodbye(s)
	},
	idle: func(s *snapshot.Socket) (uint32, bool) {
		if !s.HasInfo {
			return 0, false
		}
		i := &s.Info
		if s.RecvQ > 1 { // a goodbye: idle from the last request to the goodbye
			if i.LastDataSent < i.LastDataRecv {
				return 0, false
			}
			return i.LastDataSent - i.LastDataRecv, true
		}
		if i.LastDataRecv < i.LastAckRecv {
			return 0, false
		}
		return i.LastDataRecv - i.LastAckRecv, true
	},
	evidence: func(v *partView) []string {
		var out []string
		if v.goodbye > 0 {
			size := fmt.Sprintf("%s to %s", bytesText(v.minQ), bytesText(v.maxQ))
			if v.minQ == v.maxQ {
				size = "the same " + bytesText(v.maxQ) + " on each"
			}
			if v.goodbye < v.n {
				size = fmt.Sprintf("%d of them, %s", v.goodbye, size)
			}
			out = append(out, fmt.Sprintf("%s %s a short unread message that arrived with the FIN after a quiet spell (%s): the server said goodbye before closing idle sessions "+
				"(a database's idle-session timeout error, SMTP 421, IMAP BYE, HTTP 408), and the pool never read it",
				v.of, v.have, size))
		}
		if v.goodbye < v.n {
			out = append(out, fmt.Sprintf("%s %s Recv-Q 1 (only the FIN unread): idle pooled connections that the server closed and the pool never noticed", v.of, v.have))
		}
		if v.idleN > 0 {
			how := "last data received minus the FIN's arrival"
			if v.goodbye > 0 {
				how = "last data sent minus the goodbye's arrival"
			}
			out = append(out, fmt.Sprintf(
				"the server closed them after about %s idle (tcp_info: %s; median of %d, shortest %s): evict idle connections after less than %s",
				secondsText(v.idleMed), how, v.idleN, secondsText(v.idleMin), secondsText(v.idleMin)))
		}
		return out
	},
	steps: func(q *adviceQuery) []string {
		return []string{"find the client or pool that talks " + q.where + " (its idle/keepalive settings)"}
	},
	fix: poolIdleFix,
})

// poolIdleFix is how to make the process's pools drop connections before
// the server does: the settings of the libraries it shows first, then the
// runtime's usual ones.
func poolIdleFix(q *adviceQuery) []string {
	ev := q.evict
	known := ev > 0
	if !known {
		ev = 30 * time.Second // a placeholder value that every library accepts; the line says to go below the server's timeout
	}
	below := func(s string) string {
		if known {
			return s
		}
		return s + " (a value below the server's idle timeout)"
	}
	instead := "validate connections before use, send a keepalive query below the server's timeout, or raise the server's idle timeout above the pool's minimum"
	var out []string
	lib := func(name string, line string) {
		if q.has(name) {
			out = append(out, line)
		}
	}
	hikari := func() string {
		if ev >= Settings["hikaricp.maxLifetime"].Min {
			l := fmt.Sprintf("HikariCP: %s and %s, so connections retire before the server drops them",
				setting("hikaricp.maxLifetime", ev, instead), setting("hikaricp.idleTimeout", ev, instead))
			if ev < 30*time.Minute { // keepaliveTime must stay below maxLifetime (default 30 min)
				l += fmt.Sprintf("; or %s with the default maxLifetime, so HikariCP pings idle connections before the server's timeout", setting("hikaricp.keepaliveTime", ev, instead))
			}
			return below(l)
		}
		if ev >= Settings["hikaricp.idleTimeout"].Min {
			return fmt.Sprintf("HikariCP: %s (with minimumIdle below maximumPoolSize) retires idle connections in time, but its maxLifetime (minimum 30s) cannot: raise the server's idle timeout above 30s, or accept that HikariCP validates a connection idle for over 500 ms before handing it out",
				setting("hikaricp.idleTimeout", ev, instead))
		}
		return "HikariCP: " + setting("hikaricp.idleTimeout", ev, "raise the server's idle timeout above 30s (maxLifetime's minimum), or rely on HikariCP's validation of connections idle for over 500 ms before it hands them out (set connectionTestQuery only for drivers without JDBC4 isValid())")
	}
	switch q.runtime {
	case "java":
		lib("hikaricp", hikari())
		lib("httpclient5", below("Apache HttpClient 5: "+setting("httpclient5.evictIdleConnections", ev, instead)+" and ConnectionConfig.custom().setValidateAfterInactivity(TimeValue.ofSeconds(1))"))
		lib("okhttp", below("OkHttp: "+setting("okhttp.keepAliveDuration", ev, instead)))
		if len(out) == 0 {
			out = append(out,
				below("Apache HttpClient 5: "+setting("httpclient5.evictIdleConnections", ev, instead)+" and ConnectionConfig.custom().setValidateAfterInactivity(TimeValue.ofSeconds(1))"),
				hikari())
		}
	case "node":
		lib("undici", below("undici: "+setting("undici.keepAliveTimeout", ev, instead)))
		out = append(out, below(setting("node.agent.timeout", ev, instead)+" so idle sockets close before the server drops them"))
	case "python":
		lib("psycopg", below("psycopg_pool: "+setting("psycopg_pool.max_idle", ev, instead)+"; psycopg2 pools have no idle eviction: check connections before use (SELECT 1) or raise the server's timeout"))
		out = append(out, "urllib3/requests notice a dropped connection only when they take it from the pool again: keep pool_maxsize small, and session.close() / PoolManager.clear() after bursts; set the server's keepalive longer than the client's use")
	case "go":
		lib("pgx", below("pgxpool: "+setting("pgx.MaxConnIdleTime", ev, instead)))
		lib("go-redis", below("go-redis: "+setting("goredis.ConnMaxIdleTime", ev, instead)))
		out = append(out, below(setting("go.http.IdleConnTimeout", ev, instead)+" (and MaxIdleConnsPerHost); database/sql: "+setting("go.sql.SetConnMaxIdleTime", ev, instead)))
	case "ruby":
		out = append(out, below("net-http-persistent: "+setting("ruby.persistent.idle_timeout", ev, instead)+"; connection_pool: reload or shut down idle connections"))
	case "dotnet":
		out = append(out, below(setting("dotnet.PooledConnectionIdleTimeout", ev, instead)+", PooledConnectionLifetime = TimeSpan.FromMinutes(5)"))
	default:
		e := "evict pooled connections idle longer than the server allows, or validate a connection before reusing it"
		if known {
			e = fmt.Sprintf("evict pooled connections idle longer than %s, or validate a connection before reusing it", FormatAge(ev))
		}
		out = append(out, e)
	}
	if q.serverIdle > 0 && q.serverIdle < 10*time.Second {
		out = append(out, fmt.Sprintf("the server drops idle connections after only ~%s: if that is not intended, raise its idle timeout (PostgreSQL idle_session_timeout, MySQL wait_timeout, Redis timeout, nginx keepalive_timeout)",
			strings.TrimSpace(secondsText(q.serverIdle.Seconds()))))
	}
	return out
}
