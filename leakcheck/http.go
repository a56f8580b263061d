package leakcheck

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"time"
)

// Serve serves HTTP on l with srv, tracking every accepted connection. It
// is srv.Serve(t.Listener(l)). Connections that net/http closes leave the
// tracker; a hijacked connection stays tracked until the handler closes it.
func (t *Tracker) Serve(srv *http.Server, l net.Listener) error {
	return srv.Serve(t.Listener(l))
}

// Transport makes tr track the connections it dials and returns a
// RoundTripper, wrapping tr, that also records which code made each
// request (see [Tracker.RoundTripper]). tr is modified in place: its
// DialContext is wrapped (a nil DialContext becomes a [net.Dialer] with
// the timeouts of [net/http.DefaultTransport]), so tr used directly still
// tracks connections, with their creation stack only. Call Transport once
// per transport. DialTLSContext, if set, is not tracked.
func (t *Tracker) Transport(tr *http.Transport) http.RoundTripper {
	dial := DialFunc(tr.DialContext)
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = t.DialContext(dial)
	return t.RoundTripper(tr)
}

// RoundTripper returns a RoundTripper that calls rt and, for every request
// that obtains a tracked connection, records the requesting goroutine's
// stack on that connection. A pooled client connection is created on a
// net/http goroutine, so its creation stack names no application code;
// the stack of the latest request names the code that used it last, which
// for a leaked connection (a response body never closed) is the leaking
// call. The stack is recorded only for sampled connections. A nil rt means
// [net/http.DefaultTransport].
func (t *Tracker) RoundTripper(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if t.rate == 0 {
		return rt
	}
	r := &roundTripper{base: rt, t: t}
	r.trace = &httptrace.ClientTrace{GotConn: r.gotConn}
	return r
}

type roundTripper struct {
	base  http.RoundTripper
	t     *Tracker
	trace *httptrace.ClientTrace // shared; never composed with another
}

func (r *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	trace := r.trace
	if httptrace.ContextClientTrace(ctx) != nil {
		// WithClientTrace merges an existing trace into the new one:
		// give it a private copy.
		trace = &httptrace.ClientTrace{GotConn: r.gotConn}
	}
	return r.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
}

// gotConn runs on the goroutine that made the request.
func (r *roundTripper) gotConn(info httptrace.GotConnInfo) {
	c := info.Conn
	for c != nil {
		if tc, ok := c.(*conn); ok {
			if tc.rec.t == r.t && tc.rec.sampled {
				tc.rec.setRequest()
			}
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}

// InstallDefaultTransport makes [net/http.DefaultTransport], and so
// [net/http.DefaultClient] and http.Get, track its connections and
// attribute its requests, as [Tracker.Transport] does. Call it once, at
// start-up before any request: it replaces a package variable.
func (t *Tracker) InstallDefaultTransport() {
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		http.DefaultTransport = t.Transport(tr)
		return
	}
	http.DefaultTransport = t.RoundTripper(http.DefaultTransport)
}
