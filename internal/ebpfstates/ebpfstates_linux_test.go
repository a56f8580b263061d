package ebpfstates_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/ebpfstates"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/sockdiag"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// pairs builds, inside the calling thread's network namespace, a known set
// of sockets in five states, and returns every fd it keeps open.
func pairs(t *testing.T) []int {
	var fds []int
	keep := func(fd int) int { fds = append(fds, fd); return fd }
	listen := func(family int, sa unix.Sockaddr) (int, unix.Sockaddr) {
		fd := keep(mustFD(t)(unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)))
		must(t, unix.Bind(fd, sa))
		must(t, unix.Listen(fd, 16))
		addr, err := unix.Getsockname(fd)
		must(t, err)
		return fd, addr
	}
	l4, a4 := listen(unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	l6, a6 := listen(unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
	dial := func(family, l int, a unix.Sockaddr) (client, server int) {
		client = mustFD(t)(unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0))
		must(t, unix.Connect(client, a))
		server, _, err := unix.Accept(l)
		must(t, err)
		return client, server
	}
	// ESTABLISHED both ends, over IPv6.
	c, s := dial(unix.AF_INET6, l6, a6)
	keep(c)
	keep(s)
	// Three half-closed: the client FIN_WAIT2, the server CLOSE_WAIT.
	for range 3 {
		c, s := dial(unix.AF_INET, l4, a4)
		keep(s)
		must(t, unix.Shutdown(keep(c), unix.SHUT_WR))
	}
	// An orphaned client: a time-wait mini socket with substate FIN_WAIT2,
	// which sock_diag reports as FIN_WAIT2; its server end CLOSE_WAIT.
	c, s = dial(unix.AF_INET, l4, a4)
	keep(s)
	must(t, unix.Close(c))
	// The server closes first, then the client: the server end TIME_WAIT.
	c, s = dial(unix.AF_INET6, l6, a6)
	must(t, unix.Close(s))
	waitState(t, c, unix.BPF_TCP_CLOSE_WAIT)
	must(t, unix.Close(c))
	return fds
}

func waitState(t *testing.T, fd int, state uint8) {
	t.Helper()
	for range 500 {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		must(t, err)
		if ti.State == state {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fd %d never reached state %d", fd, state)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustFD(t *testing.T) func(int, error) int {
	return func(fd int, err error) int {
		t.Helper()
		must(t, err)
		return fd
	}
}

// dumpCounts counts the namespace's sockets by state with sock_diag.
func dumpCounts(path string) (sockdiag.StateCounts, error) {
	var n sockdiag.StateCounts
	err := netns.Do(path, func() error {
		c, err := sockdiag.Dial()
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Dump(sockdiag.Request{States: sockdiag.AllStates}, func(s *sockdiag.Socket) bool {
			n[s.State]++
			return true
		})
	})
	return n, err
}

// counterAndNetNS loads a Counter (closed when the test ends) and makes
// a network namespace for the test; it returns the namespace's path.
func counterAndNetNS(t *testing.T) (*ebpfstates.Counter, string) {
	t.Helper()
	cwtest.NeedRoot(t, "loads a BPF tcp iterator and creates a network namespace")
	counter, err := ebpfstates.Load()
	cwtest.SkipIfNotSupported(t, err, ebpfstates.ErrNotSupported)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counter.Close() })
	return counter, netns.RunDir + "/" + cwtest.NewNetNS(t)
}

// TestCountMatchesSockDiag builds sockets in five states (IPv4 and IPv6, a
// time-wait mini socket of each substate) in a network namespace of its
// own, and checks the iterator's counts against what they must be and
// against a sock_diag dump of the same namespace.
func TestCountMatchesSockDiag(t *testing.T) {
	counter, path := counterAndNetNS(t)
	var err error

	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	must(t, netns.Do(path, func() error { fds = pairs(t); return nil }))

	var want sockdiag.StateCounts
	want[sockdiag.Listen] = 2
	want[sockdiag.Established] = 2
	want[sockdiag.CloseWait] = 4
	want[sockdiag.FinWait2] = 4
	want[sockdiag.TimeWait] = 1
	var dumped sockdiag.StateCounts
	for range 500 { // the last FINs travel through loopback's softirq
		if dumped, err = dumpCounts(path); err != nil {
			t.Fatal(err)
		}
		if dumped == want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dumped != want {
		t.Fatalf("sock_diag counts %v, want %v (the fixture did not settle)", dumped, want)
	}
	var got sockdiag.StateCounts
	must(t, netns.Do(path, func() error { got, err = counter.Count(); return err }))
	if got != want {
		t.Errorf("iterator counts %v, want %v (sock_diag agrees with want)", got, want)
	}
	// A second pass starts from zero.
	must(t, netns.Do(path, func() error { got, err = counter.Count(); return err }))
	if got != want {
		t.Errorf("second pass: %v, want %v", got, want)
	}
}

// TestCountOnlyItsNamespace checks that a pass counts only the
// namespace it runs in: the test's own namespace holds none of the
// sockets made in a fresh one.
func TestCountOnlyItsNamespace(t *testing.T) {
	counter, path := counterAndNetNS(t)
	var err error
	var got sockdiag.StateCounts
	must(t, netns.Do(path, func() error { got, err = counter.Count(); return err }))
	if got != (sockdiag.StateCounts{}) {
		t.Errorf("a fresh namespace counts %v, want nothing", got)
	}
}

func TestClosedCounter(t *testing.T) {
	var c *ebpfstates.Counter
	if _, err := c.Count(); err == nil {
		t.Error("Count on a nil Counter: no error")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close on a nil Counter: %v", err)
	}
}
