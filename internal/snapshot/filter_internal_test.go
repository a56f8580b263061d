package snapshot

import (
	"net/netip"
	"testing"
)

// TestCookieFilter: every cookie of the set passes the filter, most others
// do not, and a nil filter (no set) lets everything through.
func TestCookieFilter(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  map[uint64]bool
	}{
		{"empty", map[uint64]bool{}},
		{"one", map[uint64]bool{42: true}},
		{"thousand", func() map[uint64]bool {
			m := map[uint64]bool{}
			for c := uint64(1); c <= 1000; c++ {
				m[c*7919] = true
			}
			return m
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newCookieFilter(tt.set)
			for c := range tt.set {
				if !f.has(c) {
					t.Fatalf("cookie %d of the set filtered out", c)
				}
			}
			passed := 0
			const tries = 100000
			for c := uint64(1 << 40); c < 1<<40+tries; c++ {
				if f.has(c) {
					passed++
				}
			}
			if passed > tries/8 { // 16 bits a cookie: about 1/16 at most
				t.Errorf("%d of %d cookies not in the set pass the filter", passed, tries)
			}
		})
	}
	if !cookieFilter(nil).has(7) {
		t.Error("a nil filter filtered a cookie out")
	}
}

// TestPIDCache: a pid added is found until another pid with the same slot
// replaces it or it is removed.
func TestPIDCache(t *testing.T) {
	var c pidCache
	for _, tt := range []struct {
		op   string
		pid  int
		want []int // pids found after the operation
		not  []int // pids not found
	}{
		{"add", 100, []int{100}, []int{1, 356}},
		{"add", 4194303, []int{100, 4194303}, nil},
		{"add", 356, []int{356, 4194303}, []int{100}}, // same slot as 100
		{"remove", 100, []int{356}, []int{100}},       // not there: nothing removed
		{"remove", 356, []int{4194303}, []int{356}},
	} {
		if tt.op == "add" {
			c.add(tt.pid)
		} else {
			c.remove(tt.pid)
		}
		for _, p := range tt.want {
			if !c.has(p) {
				t.Errorf("after %s %d: %d missing", tt.op, tt.pid, p)
			}
		}
		for _, p := range tt.not {
			if c.has(p) {
				t.Errorf("after %s %d: %d found", tt.op, tt.pid, p)
			}
		}
	}
}

// TestRemoteFilter: every (namespace, address) added passes, IPv4 and IPv6;
// most others, the same address in another namespace included, do not.
func TestRemoteFilter(t *testing.T) {
	var f remoteFilter
	added := []struct {
		ns   uint64
		addr string
	}{
		{4026531840, "10.0.0.1"},
		{4026531840, "2001:db8::1"},
		{4026532000, "10.0.0.2"},
		{4026532000, "::ffff:10.0.0.3"},
	}
	for _, a := range added {
		f.add(a.ns, netip.MustParseAddr(a.addr))
	}
	for _, a := range added {
		if !f.has(a.ns, netip.MustParseAddr(a.addr)) {
			t.Errorf("%d %s added, filtered out", a.ns, a.addr)
		}
	}
	passed, tries := 0, 0
	for ns := uint64(4026532100); ns < 4026532110; ns++ {
		for i := range 1000 {
			tries++
			if f.has(ns, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})) {
				passed++
			}
		}
	}
	if passed > tries/100 { // 4 bits set of 65536
		t.Errorf("%d of %d pairs not added pass the filter", passed, tries)
	}
	if f.has(4026532000, netip.MustParseAddr("10.0.0.1")) && f.has(4026531840, netip.MustParseAddr("10.0.0.2")) {
		t.Error("both addresses pass in each other's namespace")
	}
}

// TestRunsOK: namespace runs are used only when they cover the sockets
// exactly, in order.
func TestRunsOK(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int
		runs []nsRun
		want bool
	}{
		{"no sockets, no runs", 0, nil, true},
		{"sockets, no runs (procfs)", 3, nil, false},
		{"one run", 3, []nsRun{{1, 0, 3}}, true},
		{"two runs", 5, []nsRun{{1, 0, 3}, {2, 3, 5}}, true},
		{"short", 6, []nsRun{{1, 0, 3}, {2, 3, 5}}, false},
		{"gap", 5, []nsRun{{1, 0, 2}, {2, 3, 5}}, false},
		{"overlap", 5, []nsRun{{1, 0, 3}, {2, 2, 5}}, false},
	} {
		snap := &Snapshot{Sockets: make([]Socket, tt.n), nsRuns: tt.runs}
		if got := snap.runsOK(); got != tt.want {
			t.Errorf("%s: runsOK = %v, want %v", tt.name, got, tt.want)
		}
	}
}
