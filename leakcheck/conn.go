package leakcheck

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// conn is a tracked connection. It forwards everything to the wrapped
// connection and records reads, writes and Close.
type conn struct {
	net.Conn
	rec *record
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	r := c.rec
	if now := r.t.clock.nano(); r.lastRead.Load() != now {
		r.lastRead.Store(now)
	}
	if r.sampled {
		if r.firstRead.Load() == nil {
			pcs := r.t.capture(1)
			r.firstRead.CompareAndSwap(nil, &pcs)
		}
		// Every error is recorded except repeated deadline timeouts:
		// net/http's server aborts its background read with a past
		// deadline on every request, and a timeout is not the peer
		// closing.
		if err != nil && (r.readErr.Load() == nil || !errors.Is(err, os.ErrDeadlineExceeded)) {
			pcs := r.t.capture(1)
			r.readErr.Store(&pcs)
		}
	}
	if err == io.EOF {
		r.sawEOF.Store(true)
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if now := c.rec.t.clock.nano(); c.rec.lastWrite.Load() != now {
		c.rec.lastWrite.Store(now)
	}
	return n, err
}

// Close stops tracking the connection and closes it.
func (c *conn) Close() error {
	c.rec.remove()
	c.rec.cleanup.Stop()
	return c.Conn.Close()
}

// ReadFrom keeps the wrapped connection's fast path (sendfile, splice)
// for io.Copy into the connection.
func (c *conn) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.Conn}, src)
	}
	c.rec.lastWrite.Store(c.rec.t.clock.nano())
	return n, err
}

var errNoHalfClose = errors.New("leakcheck: connection does not support half-close")

// CloseWrite shuts down the writing side, if the wrapped connection can.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoHalfClose
}

// CloseRead shuts down the reading side, if the wrapped connection can.
func (c *conn) CloseRead() error {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errNoHalfClose
}

// SyscallConn gives access to the wrapped connection's file descriptor.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// NetConn returns the wrapped connection, like [crypto/tls.Conn.NetConn].
func (c *conn) NetConn() net.Conn { return c.Conn }

// Track starts tracking c, which the program obtained some other way, and
// returns the connection to use in its place. Closing the returned
// connection stops tracking and closes c. The creation stack is the
// caller's.
func (t *Tracker) Track(c net.Conn) net.Conn {
	return t.track(c, dirOther, 1)
}

// Listener returns a listener whose accepted connections are tracked as
// inbound. Pass it to [net/http.Server.Serve] to track an HTTP server's
// connections, including hijacked ones.
func (t *Tracker) Listener(l net.Listener) net.Listener {
	return &listener{Listener: l, t: t}
}

type listener struct {
	net.Listener
	t *Tracker
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.t.track(c, dirInbound, 1), nil
}

// DialFunc is the signature of [net.Dialer.DialContext] and of
// [net/http.Transport.DialContext].
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialContext returns a dial function that tracks, as outbound, every
// connection dial returns. A nil dial means a zero [net.Dialer]'s
// DialContext.
func (t *Tracker) DialContext(dial DialFunc) DialFunc {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return t.track(c, dirOutbound, 1), nil
	}
}

// Dialer returns d's DialContext, tracking every connection it returns.
// A nil d means a zero [net.Dialer].
func (t *Tracker) Dialer(d *net.Dialer) DialFunc {
	if d == nil {
		d = &net.Dialer{}
	}
	return t.DialContext(d.DialContext)
}
