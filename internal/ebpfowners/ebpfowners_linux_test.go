package ebpfowners

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/btf"
	gocmp "github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/cwtest"
)

func TestMain(m *testing.M) {
	if n := os.Getenv(envHold); n != "" {
		os.Exit(holdSockets(n))
	}
	cwtest.Main(m)
}

// owner is one (pid, fd, inode) triple.
type owner struct {
	PID, FD int
	Inode   uint64
}

// load loads the iterator with opts, or skips the test when the kernel or
// the process's capabilities do not allow it.
func loadOrSkip(t testing.TB, o loadOptions) *Iterator {
	t.Helper()
	if !InInitPIDNS() {
		t.Skip("not in the initial pid namespace: the iterator reports host pids")
	}
	it, err := load(o)
	cwtest.SkipIfNotSupported(t, err, ErrNotSupported)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if err := it.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return it
}

// procOwners is the reference: readlink over /proc/PID/fd for pids.
func procOwners(t testing.TB, pids []int) []owner {
	t.Helper()
	var out []owner
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			link, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // closed meanwhile (the ReadDir fd itself)
			}
			s, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
			if err != nil {
				t.Fatalf("parse %s -> %q: %v", e.Name(), link, err)
			}
			out = append(out, owner{pid, fd, ino})
		}
	}
	return sortOwners(out)
}

func sortOwners(o []owner) []owner {
	slices.SortFunc(o, func(a, b owner) int {
		if a.PID != b.PID {
			return a.PID - b.PID
		}
		if a.FD != b.FD {
			return a.FD - b.FD
		}
		return cmp.Compare(a.Inode, b.Inode)
	})
	return o
}

// socketInode returns the inode of a net.Conn or net.Listener's socket.
func socketInode(t testing.TB, c interface{ File() (*os.File, error) }) uint64 {
	t.Helper()
	f, err := c.File() // a dup: closed at once, the original fd stays
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// fixture is a set of processes holding sockets in several states.
type fixture struct {
	pids      []int
	holder    *cwtest.Holder
	listenIno uint64 // our LISTEN socket
	estIno    uint64 // our ESTABLISHED (server side) socket
}

func startFixture(t *testing.T) fixture {
	t.Helper()
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 3, Share: true})
	if h.SharerPID == 0 {
		t.Fatal("no sharer process")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return fixture{
		pids:      []int{os.Getpid(), h.PID, h.SharerPID},
		holder:    h,
		listenIno: socketInode(t, ln.(*net.TCPListener)),
		estIno:    socketInode(t, s.(*net.TCPConn)),
	}
}

// collect runs each and keeps the records of pids.
func collect(t *testing.T, pids []int, each func(fn func(pid, fd int, ino uint64)) error) (got []owner, all []owner) {
	t.Helper()
	err := each(func(pid, fd int, ino uint64) {
		all = append(all, owner{pid, fd, ino})
		if slices.Contains(pids, pid) {
			got = append(got, owner{pid, fd, ino})
		}
	})
	if err != nil {
		t.Fatalf("each: %v", err)
	}
	return sortOwners(got), all
}

// TestEquivalence proves that the iterator reports the same (pid, fd, inode)
// set as readlink over /proc/PID/fd, for a holder of CLOSE_WAIT sockets, a
// second process sharing them, and this process (FIN_WAIT2 client ends,
// ESTABLISHED both ends, a LISTEN socket), for every program variant.
func TestEquivalence(t *testing.T) {
	variants := []struct {
		name   string
		opts   loadOptions
		wanted bool
	}{
		{name: "each", opts: loadOptions{noFilter: true}},
		{name: "each/add-offsets", opts: loadOptions{noFilter: true, prog: progOptions{maxOff: 1}}},
		{name: "wanted/kernel", wanted: true},
		{name: "wanted/kernel-add-offsets", opts: loadOptions{prog: progOptions{maxOff: 1}}, wanted: true},
		{name: "wanted/go", opts: loadOptions{noFilter: true}, wanted: true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			it := loadOrSkip(t, v.opts)
			if v.wanted && !v.opts.noFilter && it.filterErr != nil {
				t.Fatalf("filtered program did not load: %v", it.filterErr)
			}
			fx := startFixture(t)
			want := procOwners(t, fx.pids)

			each := it.Each
			if v.wanted {
				wanted := map[uint64]struct{}{}
				for _, o := range want {
					wanted[o.Inode] = struct{}{}
				}
				each = func(fn func(pid, fd int, ino uint64)) error { return it.EachWanted(wanted, fn) }
			}
			got, all := collect(t, fx.pids, each)
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Fatalf("iterator vs /proc/PID/fd (-want +got):\n%s", diff)
			}
			checkFixture(t, fx, got)
			checkLeaders(t, all)
			if v.wanted {
				// Everything emitted was wanted, so nothing from other pids
				// unless they share our sockets.
				for _, o := range all {
					if !slices.Contains(fx.pids, o.PID) && !slices.ContainsFunc(want, func(w owner) bool { return w.Inode == o.Inode }) {
						t.Errorf("unwanted record %+v", o)
					}
				}
			}
		})
	}
}

// checkFixture checks that the sets hold what the fixture made, so that an
// equal but empty pair of sets cannot pass.
func checkFixture(t *testing.T, fx fixture, got []owner) {
	t.Helper()
	byPID := map[int]map[uint64]bool{}
	for _, o := range got {
		if byPID[o.PID] == nil {
			byPID[o.PID] = map[uint64]bool{}
		}
		byPID[o.PID][o.Inode] = true
	}
	self, holder, sharer := byPID[os.Getpid()], byPID[fx.holder.PID], byPID[fx.holder.SharerPID]
	if !self[fx.listenIno] || !self[fx.estIno] {
		t.Errorf("own LISTEN %d / ESTABLISHED %d socket missing from %v", fx.listenIno, fx.estIno, self)
	}
	// listener + 5 accepted CLOSE_WAIT sockets in the holder, all shared.
	if len(holder) < 6 {
		t.Errorf("holder %d: %d sockets, want >= 6", fx.holder.PID, len(holder))
	}
	shared := 0
	for ino := range holder {
		if sharer[ino] {
			shared++
		}
	}
	if shared < 5 {
		t.Errorf("holder and sharer share %d sockets, want >= 5", shared)
	}
}

// checkLeaders checks that every record is from a thread-group leader, once.
func checkLeaders(t *testing.T, all []owner) {
	t.Helper()
	seen := map[[2]int]bool{}
	tgid := map[int]int{}
	for _, o := range all {
		k := [2]int{o.PID, o.FD}
		if seen[k] {
			t.Errorf("pid %d fd %d reported twice", o.PID, o.FD)
		}
		seen[k] = true
		if _, ok := tgid[o.PID]; !ok {
			tgid[o.PID] = statusTgid(o.PID)
		}
		if g := tgid[o.PID]; g != 0 && g != o.PID {
			t.Errorf("pid %d is a thread of %d", o.PID, g)
		}
	}
}

// statusTgid returns the Tgid of pid from /proc/PID/status, or 0 if gone.
func statusTgid(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// TestLoadFailure forces load failures and checks they come back as wrapped
// errors (never a panic), the ones meaning "cannot run here" as
// ErrNotSupported.
func TestLoadFailure(t *testing.T) {
	loadOrSkip(t, loadOptions{noFilter: true}) // skip where nothing can load
	tests := []struct {
		name         string
		opts         loadOptions
		notSupported bool
		contains     string
	}{
		{
			name:     "offset beyond task_struct",
			opts:     loadOptions{patch: func(l *layout) { l.taskTGID.off = 1 << 20 }},
			contains: "ebpfowners: load task_file iterator program",
		},
		{
			name:     "misaligned f_inode",
			opts:     loadOptions{patch: func(l *layout) { l.fileInode.off += 3 }},
			contains: "ebpfowners: load task_file iterator program",
		},
		{
			name:     "bad width",
			opts:     loadOptions{patch: func(l *layout) { l.inodeIno.size = 3 }},
			contains: "ebpfowners: build program",
		},
		{
			name:         "no such iterator",
			opts:         loadOptions{attachTo: "no_such_iterator"},
			notSupported: true,
			contains:     "ebpfowners: load no_such_iterator iterator program",
		},
		{
			name:         "no kernel BTF",
			opts:         loadOptions{spec: func() (*btf.Spec, error) { return nil, fmt.Errorf("open vmlinux: %w", btf.ErrNotSupported) }},
			notSupported: true,
			contains:     "ebpfowners: load kernel BTF",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := load(tt.opts)
			if err == nil {
				it.Close()
				t.Fatal("load succeeded, want an error")
			}
			if it != nil {
				t.Errorf("load returned an Iterator with error %v", err)
			}
			if got := errors.Is(err, ErrNotSupported); got != tt.notSupported {
				t.Errorf("errors.Is(err, ErrNotSupported) = %v, want %v (err: %v)", got, tt.notSupported, err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not contain %q", err, tt.contains)
			}
			t.Logf("error: %.200s", err)
		})
	}
}

// TestClosed checks that a closed Iterator returns errors, not panics.
func TestClosed(t *testing.T) {
	loadOrSkip(t, loadOptions{noFilter: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0") // at least one socket
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	it, err := Load() // the exported entry point, as callers use it
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if it.filterErr != nil {
		t.Errorf("Load: filtered program: %v", it.filterErr)
	}
	n := 0
	if err := it.Each(func(int, int, uint64) { n++ }); err != nil || n == 0 {
		t.Errorf("Each: %d records, err %v", n, err)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := it.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := it.Each(func(int, int, uint64) {}); err == nil {
		t.Error("Each after Close succeeded")
	}
	if err := it.EachWanted(map[uint64]struct{}{1: {}}, func(int, int, uint64) {}); err == nil {
		t.Error("EachWanted after Close succeeded")
	}
}

// TestWantedUpdates checks that the in-kernel filter follows changes of the
// wanted set between calls.
func TestWantedUpdates(t *testing.T) {
	it := loadOrSkip(t, loadOptions{})
	if it.filterErr != nil {
		t.Fatalf("filtered program did not load: %v", it.filterErr)
	}
	fx := startFixture(t)
	sets := []map[uint64]struct{}{
		{fx.listenIno: {}},
		{fx.estIno: {}, fx.listenIno: {}},
		{fx.estIno: {}},
		{1: {}}, // no such socket
		// Same bit as the listener: the kernel emits it, Go drops it.
		{fx.listenIno + filterBits: {}},
	}
	for i, w := range sets {
		got := map[uint64]struct{}{}
		err := it.EachWanted(w, func(pid, fd int, ino uint64) {
			if pid == os.Getpid() {
				got[ino] = struct{}{}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint64]struct{}{}
		for ino := range w {
			if ino == fx.listenIno || ino == fx.estIno {
				want[ino] = struct{}{}
			}
		}
		if diff := gocmp.Diff(want, got); diff != "" {
			t.Errorf("set %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestManyObjects runs a pass over more than a million fds that are not
// sockets: the kernel then returns EAGAIN from a read that visited
// MAX_ITER_OBJECTS objects without output, and the pass must go on and still
// find our sockets.
func TestManyObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts helper processes holding 1.1M fds")
	}
	it := loadOrSkip(t, loadOptions{})
	extraFDs(t, 1_100_000, false)
	fx := startFixture(t)
	want := procOwners(t, fx.pids)
	got, _ := collect(t, fx.pids, it.Each)
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Fatalf("Each (-want +got):\n%s", diff)
	}
	// A socket of the holder, started after the helpers: the first read
	// visits their 1.1M fds with nothing to emit.
	var wantOwners []owner
	for _, o := range want {
		if o.PID == fx.holder.PID {
			wantOwners = append(wantOwners, o)
			break
		}
	}
	for _, o := range want {
		if o.PID == fx.holder.SharerPID && o.Inode == wantOwners[0].Inode {
			wantOwners = append(wantOwners, o)
		}
	}
	wanted := map[uint64]struct{}{wantOwners[0].Inode: {}}
	got, _ = collect(t, fx.pids, func(fn func(pid, fd int, ino uint64)) error { return it.EachWanted(wanted, fn) })
	if diff := gocmp.Diff(sortOwners(wantOwners), got); diff != "" {
		t.Fatalf("EachWanted (-want +got):\n%s", diff)
	}
}

// TestEachWantedIn proves the per-process passes report exactly what the
// /proc walk reports for those processes and nothing of any other, and skip
// a process that has exited.
func TestEachWantedIn(t *testing.T) {
	it := loadOrSkip(t, loadOptions{})
	fx := startFixture(t)
	gone := cwtest.Start(t, cwtest.Spec{Unread: 1})
	gonePID := gone.PID
	gone.Stop()
	want := procOwners(t, []int{fx.holder.PID, fx.holder.SharerPID})
	wanted := map[uint64]struct{}{}
	for _, o := range want {
		wanted[o.Inode] = struct{}{}
	}
	wanted[fx.estIno] = struct{}{} // held by this process, which is not asked for
	if err := it.EachWantedIn([]int{os.Getpid()}, wanted, func(int, int, uint64) {}); errors.Is(err, ErrNotSupported) {
		cwtest.SkipOnOldKernel(t, 6, 1, "task_file iterator for chosen pids")
		t.Fatal(err)
	}
	pids := []int{fx.holder.PID, gonePID, fx.holder.SharerPID}
	got, all := collect(t, pids, func(fn func(pid, fd int, ino uint64)) error {
		return it.EachWantedIn(pids, wanted, fn)
	})
	if diff := gocmp.Diff(sortOwners(want), got); diff != "" {
		t.Errorf("per-process passes differ from /proc (-want +got):\n%s", diff)
	}
	if len(all) != len(got) {
		t.Errorf("%d records from processes not asked for", len(all)-len(got))
	}
}
