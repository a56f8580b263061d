package sockdiag

import (
	"errors"
	"fmt"
	"testing"

	"github.com/closewait/closewait/internal/cwtest"
)

func TestLookupOneSocket(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{Unread: 1})
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mine Socket
	err = c.Dump(Request{States: NewStateSet(CloseWait)}, func(s *Socket) bool {
		if s.Local == h.Conns[0].Local && s.Remote == h.Conns[0].Remote {
			mine = *s
		}
		return true
	})
	if err != nil || mine.Inode == 0 || mine.HasInfo {
		t.Fatalf("dump without info: %+v, %v", mine, err)
	}
	got := mine
	if err := c.Lookup(&got); err != nil {
		t.Fatal(err)
	}
	if !got.HasInfo || got.Inode != mine.Inode || got.Cookie != mine.Cookie || got.RecvQ != 1 || got.Info.State != uint8(CloseWait) {
		t.Errorf("lookup: %+v", got)
	}
	h.Stop()
	gone := mine
	if err := c.Lookup(&gone); !errors.Is(err, ErrGone) {
		t.Errorf("lookup of a socket whose holder exited: %v, want ErrGone", err)
	}
}

// TestLookupAll asks for more sockets than one batch holds, IPv4 and IPv6,
// some of them closed in between, and checks each answer against a dump
// with tcp_info.
func TestLookupAll(t *testing.T) {
	h4 := cwtest.Start(t, cwtest.Spec{Unread: lookupBatch, ReadEOF: 20})
	h6 := cwtest.Start(t, cwtest.Spec{Network: "tcp6", Unread: 3})
	gone := cwtest.Start(t, cwtest.Spec{Unread: 2})
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := func(l, r fmt.Stringer) string { return l.String() + " " + r.String() }
	want := map[string]Socket{} // by addresses, with tcp_info
	var socks []Socket          // without
	isOurs := map[string]bool{}
	for _, h := range []*cwtest.Holder{h4, h6, gone} {
		for _, cn := range h.Conns {
			isOurs[key(cn.Local, cn.Remote)] = true
		}
	}
	for _, info := range []bool{true, false} {
		err := c.Dump(Request{States: NewStateSet(CloseWait), Info: info}, func(s *Socket) bool {
			if isOurs[key(s.Local, s.Remote)] {
				if info {
					want[key(s.Local, s.Remote)] = *s
				} else {
					socks = append(socks, *s)
				}
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(socks) != lookupBatch+20+3+2 {
		t.Fatalf("dump found %d of the holders' sockets", len(socks))
	}
	goneRemotes := gone.RemotePorts("")
	gone.Stop()
	errs, err := c.LookupAll(socks)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range socks {
		w := want[key(s.Local, s.Remote)]
		if goneRemotes[w.Remote.Port()] && w.Local.Port() == gone.Listen.Port() {
			if !errors.Is(errs[i], ErrGone) {
				t.Errorf("%v: %v, want ErrGone (its holder exited)", w.Remote, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("%v: %v", w.Remote, errs[i])
			continue
		}
		if !s.HasInfo || s.Inode != w.Inode || s.Cookie != w.Cookie || s.RecvQ != w.RecvQ || s.Local != w.Local || s.Family != w.Family {
			t.Errorf("%v: looked up %+v, dumped %+v", w.Remote, s, w)
		}
	}
}
