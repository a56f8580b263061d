package procscan

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const fixture = "testdata/proc"

func TestFindOwnersFixture(t *testing.T) {
	fs := NewFS(fixture)
	tests := []struct {
		name   string
		wanted []uint64
		opt    ScanOptions
		want   map[uint64][]Owner
	}{
		{"shared after fork: parent and child", []uint64{41234}, ScanOptions{}, map[uint64][]Owner{41234: {{100, 3}, {200, 7}}}},
		{"several of one process", []uint64{41235, 41000}, ScanOptions{}, map[uint64][]Owner{41235: {{100, 4}}, 41000: {{100, 5}}}},
		{"unrelated process", []uint64{55555}, ScanOptions{}, map[uint64][]Owner{55555: {{300, 20}}}},
		{"not held by anyone", []uint64{1}, ScanOptions{}, map[uint64][]Owner{}},
		{"complete scan", []uint64{41234, 55555}, ScanOptions{Complete: true, Workers: 1}, map[uint64][]Owner{41234: {{100, 3}, {200, 7}}, 55555: {{300, 20}}}},
		{"only some pids", []uint64{41234}, ScanOptions{OnlyPIDs: map[int]bool{200: true}}, map[uint64][]Owner{41234: {{200, 7}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wanted := map[uint64]struct{}{}
			for _, w := range tt.wanted {
				wanted[w] = struct{}{}
			}
			res, err := fs.FindOwners(wanted, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, res.Owners); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
			if res.Visited+res.Skipped != res.Processes {
				t.Errorf("visited %d + skipped %d != %d processes", res.Visited, res.Skipped, res.Processes)
			}
		})
	}
}

func TestFindOwnersStopsEarly(t *testing.T) {
	fs := NewFS(fixture)
	// 55555 is held only by nginx (300), unrelated to the others: once it is
	// found with one worker, 100 and 200 (not relatives of 300) need no read
	// unless they come first in the order. The uid hint puts 300 (uid 33) first.
	res, err := fs.FindOwners(map[uint64]struct{}{55555: {}}, ScanOptions{Workers: 1, UIDs: map[uint32]bool{33: true}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Visited != 1 || res.Skipped != res.Processes-1 {
		t.Errorf("visited %d, skipped %d of %d; want 1 visited", res.Visited, res.Skipped, res.Processes)
	}
	if res.FDs != 5 {
		t.Errorf("read %d fd links, want nginx's 5", res.FDs)
	}
}

func TestProcessFixture(t *testing.T) {
	fs := NewFS(fixture)
	p, err := fs.Process(100)
	if err != nil {
		t.Fatal(err)
	}
	want := Process{PID: 100, PPID: 1, Comm: "java", Cmdline: "java -Xmx2g -jar payments.jar", UID: 1000, OpenFDs: 6,
		FDSoft: 1024, FDHard: 4096, Threads: 48,
		Cgroup:    "/system.slice/docker-4f1e2d3c4b5a69788796a5b4c3d2e1f04f1e2d3c4b5a69788796a5b4c3d2e1f0.scope",
		Container: Container{Runtime: "docker", ID: "4f1e2d3c4b5a69788796a5b4c3d2e1f04f1e2d3c4b5a69788796a5b4c3d2e1f0"}}
	got := *p
	got.StartTime, got.User, got.Exe, got.Missing = want.StartTime, "", "", nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("process 100 (-want +got):\n%s", diff)
	}
	if want := time.Unix(1764000000+123, 450e6); !p.StartTime.Equal(want) {
		t.Errorf("start time %v, want btime + 12345 ticks = %v", p.StartTime, want)
	}
	if u := p.FDUsage(); u < 0.0058 || u > 0.0059 {
		t.Errorf("fd usage %v, want 6/1024", u)
	}

	p, err = fs.Process(200)
	if err != nil {
		t.Fatal(err)
	}
	if p.Comm != "python3" || p.PPID != 100 || p.FDSoft != Unlimited || p.FDUsage() != 0 || p.Container.PodUID != "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718" {
		t.Errorf("process 200: %+v", p)
	}

	if _, err := fs.Process(999); !errors.Is(err, ErrVanished) {
		t.Errorf("missing pid: err %v, want ErrVanished", err)
	}
}

func TestParseFDLimits(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		soft, hard uint64
		wantErr    bool
	}{
		{"numbers", "Max open files            1024                 4096                 files\n", 1024, 4096, false},
		{"unlimited", "Max open files            unlimited            unlimited            files\n", Unlimited, Unlimited, false},
		{"missing", "Max processes 10 10 processes\n", 0, 0, true},
		{"garbage", "Max open files            many                 4096                 files\n", 0, 0, true},
		{"short", "Max open files 12\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			soft, hard, err := ParseFDLimits([]byte(tt.in))
			if (err != nil) != tt.wantErr || soft != tt.soft || hard != tt.hard {
				t.Errorf("= %d, %d, %v; want %d, %d, err %v", soft, hard, err, tt.soft, tt.hard, tt.wantErr)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	for in, want := range map[string]int{
		"1 (systemd) S 0 1 1 0":             0,
		"200 (python3 (w)) S 100 100 100 0": 100,
		"7 (a ) b) R 42 7 7":                42,
	} {
		st, err := parseStat([]byte(in))
		if err != nil || st.PPID != want {
			t.Errorf("parseStat(%q) = %d, %v; want %d", in, st.PPID, err, want)
		}
	}
	for _, bad := range []string{"", "1 systemd S 0", "1 (x) S"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestParseSocketLink(t *testing.T) {
	for in, want := range map[string]uint64{"socket:[41234]": 41234, "socket:[0]": 0} {
		if got, ok := parseSocketLink([]byte(in)); !ok || got != want {
			t.Errorf("parseSocketLink(%q) = %d, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"pipe:[1]", "socket:[]", "socket:[12", "socket:[1a]", "/dev/null", "socket:"} {
		if _, ok := parseSocketLink([]byte(bad)); ok {
			t.Errorf("parseSocketLink(%q) accepted", bad)
		}
	}
}

func TestNewFSDetectsRealProc(t *testing.T) {
	if !NewFS("/proc").isProc {
		t.Skip("/proc is not a procfs mount here")
	}
	if NewFS(fixture).isProc {
		t.Error("fixture tree taken for procfs")
	}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip(err)
	}
	n, err := NewFS("/proc").fdCount(os.Getpid())
	if err != nil || n < 3 {
		t.Errorf("own fd count %d, %v", n, err)
	}
}

type triple struct {
	pid, fd int
	ino     uint64
}

// listSource replays recorded (pid, fd, inode) triples, as a one-pass source would report them.
type listSource struct {
	triples []triple
	err     error
}

func (s listSource) EachWanted(wanted map[uint64]struct{}, fn func(pid, fd int, inode uint64)) error {
	if s.err != nil {
		return s.err
	}
	for _, t := range s.triples {
		if _, ok := wanted[t.ino]; ok {
			fn(t.pid, t.fd, t.ino)
		}
	}
	return nil
}

func TestFindOwnersWithSource(t *testing.T) {
	fs := NewFS(fixture)
	wanted := map[uint64]struct{}{41234: {}, 55555: {}}
	src := listSource{triples: []triple{{200, 7, 41234}, {100, 3, 41234}, {300, 20, 55555}, {300, 21, 1}}}
	res, err := fs.FindOwners(wanted, ScanOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]Owner{41234: {{100, 3}, {200, 7}}, 55555: {{300, 20}}}
	if diff := cmp.Diff(want, res.Owners); diff != "" || res.Method != "ebpf" {
		t.Errorf("method %s, owners (-want +got):\n%s", res.Method, diff)
	}

	// A failing source falls back to the /proc walk, which finds the same owners.
	res, err = fs.FindOwners(wanted, ScanOptions{Source: listSource{err: errors.New("verifier says no")}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, res.Owners); diff != "" || res.Method != "proc" || res.Fallback == nil {
		t.Errorf("fallback: method %s, fallback %v, owners (-want +got):\n%s", res.Method, res.Fallback, diff)
	}
}

// lister replays triples as an unfiltered one-pass source.
type lister struct {
	triples []triple
	err     error
}

func (l lister) Each(fn func(pid, fd int, inode uint64)) error {
	for _, t := range l.triples {
		fn(t.pid, t.fd, t.ino)
	}
	return l.err
}

func TestPrefetch(t *testing.T) {
	fs := NewFS(fixture)
	l := lister{triples: []triple{{200, 7, 41234}, {100, 3, 41234}, {300, 20, 55555}, {300, 21, 1}}}
	res, err := fs.FindOwners(map[uint64]struct{}{41234: {}}, ScanOptions{Source: Prefetch(l)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]Owner{41234: {{100, 3}, {200, 7}}}
	if diff := cmp.Diff(want, res.Owners); diff != "" || res.Method != "ebpf" {
		t.Errorf("method %s, owners (-want +got):\n%s", res.Method, diff)
	}
	// A pass that failed falls back to the walk.
	res, err = fs.FindOwners(map[uint64]struct{}{41234: {}}, ScanOptions{Source: Prefetch(lister{err: errors.New("read: EINTR storm")})})
	if err != nil || res.Method != "proc" || res.Fallback == nil {
		t.Errorf("failed prefetch: %v, method %s, fallback %v", err, res.Method, res.Fallback)
	}
	if diff := cmp.Diff(want, res.Owners); diff != "" {
		t.Errorf("fallback owners (-want +got):\n%s", diff)
	}
}
