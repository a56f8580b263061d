//go:build linux

package netns_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/netns"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCurrentIsSelf(t *testing.T) {
	cur, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	if want := inodeOf(t, "/proc/self/ns/net"); cur != want {
		t.Errorf("Current() = %d, want %d (/proc/self/ns/net)", cur, want)
	}
}

func TestResolveForms(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"4026531840", 4026531840, true},
		{"net:[4026531840]", 4026531840, true},
		{" 4026532281 ", 4026532281, true},
		{"", 0, false},
		{"0", 0, false},
		{"../etc", 0, false},
		{"a/b", 0, false},
		{"cwtest-no-such-namespace", 0, false},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := netns.Resolve(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("Resolve(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestListFindsCreatedNamespace(t *testing.T) {
	name := cwtest.NewNetNS(t)
	want := inodeOf(t, netns.RunDir+"/"+name)
	got, err := netns.Resolve(name)
	if err != nil || got != want {
		t.Fatalf("Resolve(%q) = %d, %v; want %d", name, got, err, want)
	}
	list, err := netns.List("")
	if err != nil {
		t.Fatal(err)
	}
	if !list[0].Current {
		t.Errorf("List()[0] = %+v, want the current namespace first", list[0])
	}
	seen := map[uint64]int{}
	var found *netns.Namespace
	for i, ns := range list {
		seen[ns.Inode]++
		if ns.Inode == want {
			found = &list[i]
		}
	}
	for ino, n := range seen {
		if n > 1 {
			t.Errorf("namespace %d listed %d times", ino, n)
		}
	}
	if found == nil {
		t.Fatalf("namespace %s (%d) not in List(): %v", name, want, list)
	}
	if found.Name != name || found.PID != 0 || found.Path != netns.RunDir+"/"+name {
		t.Errorf("namespace without process: %+v, want name %s, pid 0, path under /run/netns", *found, name)
	}

	// With a process inside, it becomes the representative pid.
	h := cwtest.Start(t, cwtest.Spec{NetNS: name, Unread: 1})
	list, err = netns.List("")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range list {
		if ns.Inode == want {
			if ns.PID != h.PID || ns.Name != name || ns.Path != fmt.Sprintf("/proc/%d/ns/net", h.PID) {
				t.Errorf("namespace with holder %d: %+v", h.PID, ns)
			}
			return
		}
	}
	t.Errorf("namespace %s gone from List() once a process is in it", name)
}

func TestDoEntersAndReturns(t *testing.T) {
	name := cwtest.NewNetNS(t)
	want := inodeOf(t, netns.RunDir+"/"+name)
	before, _ := netns.Current()
	var inside uint64
	if err := netns.Do(netns.RunDir+"/"+name, func() error {
		var err error
		inside, err = netns.Current()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("inside Do: namespace %d, want %d", inside, want)
	}
	after, _ := netns.Current()
	if after != before {
		t.Errorf("after Do: namespace %d, want %d (the caller must never move)", after, before)
	}
	sentinel := errors.New("fn failed")
	if err := netns.Do(netns.RunDir+"/"+name, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := netns.Do("/nonexistent/ns", func() error { t.Error("fn ran"); return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Do on a missing path: %v, want not exist", err)
	}
	if err := netns.Do("/proc/self/status", func() error { t.Error("fn ran"); return nil }); err == nil {
		t.Error("Do on a file that is no namespace: no error")
	}
}

// BenchmarkList measures one walk of /proc/*/ns/net and /run/netns, which
// every default snapshot pays.
func BenchmarkList(b *testing.B) {
	var n int
	for b.Loop() {
		list, err := netns.List("")
		if err != nil {
			b.Fatal(err)
		}
		n = len(list)
	}
	b.ReportMetric(float64(n), "namespaces")
}

// BenchmarkDoDial measures entering a namespace to open one socket there and
// coming back, what a snapshot pays per namespace besides its dump.
func BenchmarkDoDial(b *testing.B) {
	cwtest.NeedRoot(b, "enters a network namespace")
	for b.Loop() {
		if err := netns.Do("/proc/self/ns/net", func() error {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
