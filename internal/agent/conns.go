package agent

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// MaxConns is the most connections the agent's server keeps open at once. A
// connection accepted beyond it closes the connection that has waited
// longest without a request in progress: an idle keep-alive connection
// first, else one still sending its request (a slow or stalled client); when
// every connection is serving a request, the new one is closed. So a flood
// of idle or slow connections cannot hold the agent's descriptors, and a
// fresh request (Prometheus, /healthz probes) is still answered.
const MaxConns = 256

// connLimit is a listener that bounds open connections as MaxConns says.
// Its connState method must be the server's ConnState hook.
type connLimit struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]*connInfo
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

// LimitConns wraps ln so that srv holds at most max connections (see
// MaxConns); it sets srv.ConnState.
func LimitConns(ln net.Listener, srv *http.Server, max int) net.Listener {
	l := &connLimit{Listener: ln, max: max, conns: map[net.Conn]*connInfo{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		l.connState(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	return l
}

// Accept accepts a connection, first making room for it.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if len(l.conns) >= l.max {
			victim := l.oldest(http.StateIdle)
			if victim == nil {
				victim = l.oldest(http.StateNew)
			}
			if victim == nil { // every connection is serving a request
				l.mu.Unlock()
				c.Close()
				continue
			}
			delete(l.conns, victim)
			victim.Close() // the server sees the close and ends the connection
		}
		l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
		l.mu.Unlock()
		return c, nil
	}
}

// oldest returns the connection longest in state s, or nil. Called with mu held.
func (l *connLimit) oldest(s http.ConnState) net.Conn {
	var victim net.Conn
	var since time.Time
	for c, ci := range l.conns {
		if ci.state == s && (victim == nil || ci.since.Before(since)) {
			victim, since = c, ci.since
		}
	}
	return victim
}

// connState follows the server's connections (TLS ones through their
// underlying connection, which is what Accept returned).
func (l *connLimit) connState(c net.Conn, s http.ConnState) {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ci, ok := l.conns[c]
	switch {
	case !ok: // already closed to make room
	case s == http.StateClosed || s == http.StateHijacked:
		delete(l.conns, c)
	default:
		ci.state, ci.since = s, time.Now()
	}
}
