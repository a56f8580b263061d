package sockevents

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// openOrSkip opens a feed, skipping the test where the kernel or the
// process's privileges do not allow one.
func openOrSkip(t *testing.T, o openOptions) *Feed {
	t.Helper()
	f, err := open(o)
	cwtest.SkipIfNotSupported(t, err, ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// drain returns the events queued now, failing the test on a loss.
func drain(t *testing.T, f *Feed) []Event {
	t.Helper()
	var evs []Event
	complete, err := f.Drain(func(e *Event) { evs = append(evs, *e) })
	if err != nil {
		t.Fatal(err)
	}
	if !complete {
		t.Fatal("Drain reported lost events")
	}
	return evs
}

// dumpCookies returns the cookies of the CLOSE_WAIT sockets in the current
// network namespace, by remote address.
func dumpCookies(t *testing.T) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	err := sockdiag.Dump(sockdiag.Request{States: sockdiag.NewStateSet(sockdiag.CloseWait)}, func(s *sockdiag.Socket) bool {
		m[s.Local.String()+"-"+s.Remote.String()] = s.Cookie
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFeedFollowsCloseWait(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			f := openOrSkip(t, openOptions{})
			drain(t, f) // whatever the host did before
			ownNS, err := netns.Current()
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			h := cwtest.Start(t, cwtest.Spec{Network: network, Unread: 2, ReadEOF: 2, NotAccepted: 1})
			after := time.Now()
			cookies := dumpCookies(t)

			// Every socket of the holder entered CLOSE_WAIT once, named as
			// a dump names it.
			entered := map[string]Event{}
			for _, e := range drain(t, f) {
				if e.Entered() {
					entered[e.Socket.Local.String()+"-"+e.Socket.Remote.String()] = e
				}
			}
			for _, c := range h.Conns {
				key := c.Local.String() + "-" + c.Remote.String()
				e, ok := entered[key]
				if !ok {
					t.Errorf("%s (%s): no event for its entry into CLOSE_WAIT", key, c.Mode)
					continue
				}
				if e.Old != sockdiag.Established || e.New != sockdiag.CloseWait {
					t.Errorf("%s: %v -> %v, want ESTABLISHED -> CLOSE_WAIT", key, e.Old, e.New)
				}
				if want := cookies[key]; e.Socket.Cookie != want || want == 0 {
					t.Errorf("%s: cookie %d, the dump says %d", key, e.Socket.Cookie, want)
				}
				if e.Socket.NetNS != ownNS {
					t.Errorf("%s: netns %d, want %d", key, e.Socket.NetNS, ownNS)
				}
				wantFamily := uint8(syscall.AF_INET)
				if network == "tcp6" {
					wantFamily = syscall.AF_INET6
				}
				if e.Socket.Family != wantFamily {
					t.Errorf("%s: family %d, want %d", key, e.Socket.Family, wantFamily)
				}
				if e.Time.Before(before.Add(-time.Second)) || e.Time.After(after.Add(time.Second)) {
					t.Errorf("%s: entered at %v, outside the test's %v..%v", key, e.Time, before, after)
				}
			}

			// Ending the holder closes them: each leaves CLOSE_WAIT.
			h.Stop()
			left := map[uint64]Event{}
			deadline := time.Now().Add(5 * time.Second)
			for len(left) < len(h.Conns) && time.Now().Before(deadline) {
				for _, e := range drain(t, f) {
					if e.Old == sockdiag.CloseWait {
						left[e.Socket.Cookie] = e
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, c := range h.Conns {
				key := c.Local.String() + "-" + c.Remote.String()
				e, ok := left[cookies[key]]
				if !ok {
					t.Errorf("%s (%s): no event for leaving CLOSE_WAIT", key, c.Mode)
					continue
				}
				if e.New != sockdiag.LastAck && e.New != sockdiag.Close {
					t.Errorf("%s: left for %v, want LAST_ACK or CLOSE", key, e.New)
				}
			}
		})
	}
}

func TestFeedReportsOverflow(t *testing.T) {
	page := uint32(os.Getpagesize())
	f := openOrSkip(t, openOptions{ringSize: page}) // room for a few dozen records
	drain(t, f)
	n := int(page)/recordSize(f.l) + 10
	cwtest.Start(t, cwtest.Spec{ReadEOF: n})
	complete, err := f.Drain(func(*Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if complete {
		t.Fatalf("%d sockets entered CLOSE_WAIT through a ring of %d bytes, and Drain says nothing was lost", n, page)
	}
	// The loss is reported once: the next drain is complete again.
	if complete, err := f.Drain(func(*Event) {}); err != nil || !complete {
		t.Fatalf("second Drain: complete=%v err=%v, want true, nil", complete, err)
	}
}

// TestRingFor: the ring holds about 2,000 changes a second of the drain
// interval, as a power of two the kernel accepts, between 256 KB and
// RingSize; and the kernel takes each size.
func TestRingFor(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     uint32
	}{
		{100 * time.Millisecond, 256 << 10},
		{time.Second, 256 << 10},
		{2 * time.Second, 512 << 10},
		{15 * time.Second, RingSize},
		{time.Hour, RingSize},
	} {
		if got := RingFor(tc.interval); got != tc.want {
			t.Errorf("RingFor(%v) = %d, want %d", tc.interval, got, tc.want)
		}
	}
	for _, size := range []uint32{RingFor(time.Second), RingFor(15 * time.Second)} {
		f := openOrSkip(t, openOptions{ringSize: size})
		f.Close()
	}
}
