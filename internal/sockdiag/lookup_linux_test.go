package sockdiag

import (
	"errors"
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
