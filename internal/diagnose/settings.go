package diagnose

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Setting is a client library's setting that advice names with a value,
// with the limits its documentation states. Advice writes a value only
// through [Setting.Value], which refuses one outside the limits; the
// registry test checks every line it can produce.
type Setting struct {
	Library string        // "HikariCP"
	Name    string        // "idleTimeout"
	Min     time.Duration // the documented minimum (0: none beyond > 0)
	Max     time.Duration // the documented maximum (0: none)
	// Unit is what the value is written in: time.Millisecond, time.Second,
	// or 0 for a Go duration expression (800 * time.Millisecond).
	Unit time.Duration
	// Format writes the setting with its value, e.g. "idleTimeout=%s".
	Format string
	// Doc is where the limits are documented.
	Doc string
}

// Value returns the setting written with value d, or false when d is
// outside the documented limits.
func (s Setting) Value(d time.Duration) (string, bool) {
	if d <= 0 || d < s.Min || (s.Max > 0 && d > s.Max) {
		return "", false
	}
	var v string
	switch s.Unit {
	case time.Millisecond:
		v = strconv.FormatInt(d.Milliseconds(), 10)
	case time.Second:
		v = strconv.FormatFloat(math.Floor(d.Seconds()*10)/10, 'f', -1, 64)
	default:
		v = goDuration(d)
	}
	return fmt.Sprintf(s.Format, v), true
}

// goDuration writes d as a Go constant expression: "10 * time.Second",
// "800 * time.Millisecond".
func goDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d * time.Second", d/time.Second)
	}
	return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
}

// Settings are the library settings advice names with a value, by key.
var Settings = map[string]Setting{
	"hikaricp.idleTimeout": {Library: "HikariCP", Name: "idleTimeout", Min: 10 * time.Second, Unit: time.Millisecond, Format: "idleTimeout=%s",
		Doc: "https://github.com/brettwooldridge/HikariCP#frequently-used (minimum 10000 ms)"},
	"hikaricp.maxLifetime": {Library: "HikariCP", Name: "maxLifetime", Min: 30 * time.Second, Unit: time.Millisecond, Format: "maxLifetime=%s",
		Doc: "https://github.com/brettwooldridge/HikariCP#frequently-used (minimum 30000 ms)"},
	"hikaricp.keepaliveTime": {Library: "HikariCP", Name: "keepaliveTime", Min: 30 * time.Second, Unit: time.Millisecond, Format: "keepaliveTime=%s",
		Doc: "https://github.com/brettwooldridge/HikariCP#frequently-used (minimum 30000 ms, below maxLifetime)"},
	"httpclient5.evictIdleConnections": {Library: "Apache HttpClient 5", Name: "evictIdleConnections", Min: time.Millisecond, Unit: time.Millisecond,
		Format: "HttpClients.custom().evictIdleConnections(TimeValue.ofMilliseconds(%s))",
		Doc:    "https://hc.apache.org/httpcomponents-client-5.4.x/current/httpclient5/apidocs/org/apache/hc/client5/http/impl/classic/HttpClientBuilder.html#evictIdleConnections(org.apache.hc.core5.util.TimeValue)"},
	"okhttp.keepAliveDuration": {Library: "OkHttp", Name: "keepAliveDuration", Min: time.Millisecond, Unit: time.Millisecond,
		Format: "new ConnectionPool(5, %s, TimeUnit.MILLISECONDS)",
		Doc:    "https://square.github.io/okhttp/5.x/okhttp/okhttp3/-connection-pool/ (keepAliveDuration > 0)"},
	"node.agent.timeout": {Library: "node:http", Name: "timeout", Min: time.Millisecond, Unit: time.Millisecond,
		Format: "new http.Agent({ keepAlive: true, timeout: %s })",
		Doc:    "https://nodejs.org/api/http.html#new-agentoptions (socket timeout in ms; an idle free socket that times out is destroyed)"},
	"undici.keepAliveTimeout": {Library: "undici", Name: "keepAliveTimeout", Min: time.Millisecond, Unit: time.Millisecond,
		Format: "new Agent({ keepAliveTimeout: %s })",
		Doc:    "https://undici.nodejs.org/#/docs/api/Client (keepAliveTimeout, ms)"},
	"go.http.IdleConnTimeout": {Library: "net/http", Name: "IdleConnTimeout", Min: time.Millisecond, Unit: 0,
		Format: "http.Transport{IdleConnTimeout: %s}",
		Doc:    "https://pkg.go.dev/net/http#Transport (zero means no limit)"},
	"go.sql.SetConnMaxIdleTime": {Library: "database/sql", Name: "SetConnMaxIdleTime", Min: time.Millisecond, Unit: 0,
		Format: "db.SetConnMaxIdleTime(%s)",
		Doc:    "https://pkg.go.dev/database/sql#DB.SetConnMaxIdleTime (d <= 0: not closed for idleness)"},
	"pgx.MaxConnIdleTime": {Library: "pgxpool", Name: "MaxConnIdleTime", Min: time.Millisecond, Unit: 0,
		Format: "config.MaxConnIdleTime = %s",
		Doc:    "https://pkg.go.dev/github.com/jackc/pgx/v5/pgxpool#Config"},
	"goredis.ConnMaxIdleTime": {Library: "go-redis", Name: "ConnMaxIdleTime", Min: time.Millisecond, Unit: 0,
		Format: "redis.Options{ConnMaxIdleTime: %s}",
		Doc:    "https://pkg.go.dev/github.com/redis/go-redis/v9#Options (-1 disables)"},
	"dotnet.PooledConnectionIdleTimeout": {Library: "SocketsHttpHandler", Name: "PooledConnectionIdleTimeout", Min: time.Millisecond, Unit: time.Millisecond,
		Format: "new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromMilliseconds(%s) }",
		Doc:    "https://learn.microsoft.com/dotnet/api/system.net.http.socketshttphandler.pooledconnectionidletimeout"},
	"ruby.persistent.idle_timeout": {Library: "net-http-persistent", Name: "idle_timeout", Min: 100 * time.Millisecond, Unit: time.Second,
		Format: "http.idle_timeout = %s",
		Doc:    "https://www.rubydoc.info/gems/net-http-persistent/Net/HTTP/Persistent#idle_timeout-instance_method (seconds)"},
	"psycopg_pool.max_idle": {Library: "psycopg_pool", Name: "max_idle", Min: 100 * time.Millisecond, Unit: time.Second,
		Format: "ConnectionPool(..., max_idle=%s)",
		Doc:    "https://www.psycopg.org/psycopg3/docs/api/pool.html (max_idle, seconds)"},
}

// setting writes the setting with key k at d; when d is below what the
// library allows it says so, and what works instead. It panics on an
// unknown key (a programming error the registry test catches).
func setting(k string, d time.Duration, instead string) string {
	s, ok := Settings[k]
	if !ok {
		panic("diagnose: no setting " + k)
	}
	if v, ok := s.Value(d); ok {
		return v
	}
	return fmt.Sprintf("%s's %s cannot go below %s, more than the server allows (~%s): %s",
		s.Library, s.Name, FormatAge(s.Min), FormatAge(d), instead)
}

// evictBelow is an idle eviction comfortably below a server idle timeout:
// 80%, rounded down to seconds from 2 s up, else to 100 ms (at least 100 ms).
func evictBelow(timeout time.Duration) time.Duration {
	e := timeout * 8 / 10
	if e >= 2*time.Second {
		return e.Truncate(time.Second)
	}
	return max(e.Truncate(100*time.Millisecond), 100*time.Millisecond)
}

// libraryRules name a client library from what the process shows: its
// command line (a Java class path), its mapped objects, or a Go binary's
// module list.
var libraryRules = []struct {
	lib    string
	inArgs []string // substrings of the command line
	inLibs []string // prefixes of mapped objects' base names
	inMods []string // Go module paths (prefixes)
}{
	{lib: "hikaricp", inArgs: []string{"HikariCP", "hikaricp"}},
	{lib: "httpclient5", inArgs: []string{"httpclient5"}},
	{lib: "okhttp", inArgs: []string{"okhttp"}},
	{lib: "psycopg", inLibs: []string{"_psycopg", "psycopg"}},
	{lib: "pgx", inMods: []string{"github.com/jackc/pgx"}},
	{lib: "go-redis", inMods: []string{"github.com/redis/go-redis", "github.com/go-redis/redis"}},
	{lib: "undici", inArgs: []string{"undici"}},
}

// detectLibraries names the client libraries a process shows, sorted.
func detectLibraries(cmdline string, libs, mods []string) []string {
	var out []string
	for _, r := range libraryRules {
		found := false
		for _, a := range r.inArgs {
			found = found || strings.Contains(cmdline, a)
		}
		for _, p := range r.inLibs {
			for _, l := range libs {
				found = found || strings.HasPrefix(l, p)
			}
		}
		for _, p := range r.inMods {
			for _, m := range mods {
				found = found || strings.HasPrefix(m, p)
			}
		}
		if found {
			out = append(out, r.lib)
		}
	}
	slices.Sort(out)
	return out
}
