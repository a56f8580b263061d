package history

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

const envWriter = "CLOSEWAIT_HISTORY_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(envWriter); path != "" {
		os.Exit(runWriter(path))
	}
	cwtest.Main(m)
}

// runWriter records big reports in a loop and prints the count after each
// commit, until it is killed.
func runWriter(path string) int {
	s, err := Open(path, Options{MaxBytes: 4 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	t0 := time.Unix(1_800_000_000, 0)
	for i := 1; ; i++ {
		inodes := make([]uint64, 2000)
		for j := range inodes {
			inodes[j] = uint64(i*100 + j) // churn: most inodes stay, some enter and leave
		}
		r := makeReport(t0.Add(time.Duration(i)*time.Second), []proc{{pid: 100, cw: i, fds: 10 + i, start: 1}, {pid: 200, cw: 2 * i, fds: 10, start: 1}}, inodes)
		if err := s.Record(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(i)
	}
}

type proc struct {
	pid, cw, fds int
	start        int64 // start time, seconds
}

// makeReport builds the report of a snapshot at t: processes with the
// given counts, and CLOSE_WAIT sockets with the given inodes.
func makeReport(t time.Time, procs []proc, inodes []uint64) *diagnose.Report {
	snap := &snapshot.Snapshot{Time: t, Host: "test", States: map[sockdiag.State]int{sockdiag.CloseWait: len(inodes), sockdiag.Established: 3}}
	for _, ino := range inodes {
		snap.Sockets = append(snap.Sockets, snapshot.Socket{Socket: sockdiag.Socket{
			State: sockdiag.CloseWait, Inode: ino,
			Local:  netip.MustParseAddrPort("127.0.0.1:8080"),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(ino%60000+1)),
		}})
	}
	r := &diagnose.Report{Snapshot: snap, CloseWait: len(inodes)}
	for _, p := range procs {
		r.Processes = append(r.Processes, &diagnose.ProcessReport{
			PID: p.pid, CloseWait: p.cw, Oldest: time.Duration(p.cw) * time.Second, HasAge: true, Status: diagnose.Warning,
			Process: &procscan.Process{PID: p.pid, Comm: "p" + strconv.Itoa(p.pid), OpenFDs: p.fds, FDSoft: 1024, StartTime: time.Unix(p.start, 0)},
		})
	}
	return r
}

func open(t *testing.T, path string, opt Options) *Store {
	t.Helper()
	s, err := Open(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRecordSeriesTotalsFirstSeen(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	t0 := time.Unix(1_800_000_000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	steps := []struct {
		procs  []proc
		inodes []uint64
	}{
		{[]proc{{pid: 7, cw: 1, fds: 20, start: 1}}, []uint64{10, 11}},
		{[]proc{{pid: 7, cw: 3, fds: 22, start: 1}, {pid: 9, cw: 1, fds: 5, start: 1}}, []uint64{10, 11, 12, 13}},
		{[]proc{{pid: 7, cw: 2, fds: 21, start: 1}}, []uint64{11, 13, 14}},
		// pid 9 reused by another process (another start time)
		{[]proc{{pid: 7, cw: 5, fds: 24, start: 1}, {pid: 9, cw: 4, fds: 8, start: 50}}, []uint64{11, 13, 14}},
	}
	for i, st := range steps {
		if err := s.Record(makeReport(at(i), st.procs, st.inodes)); err != nil {
			t.Fatal(err)
		}
	}

	series, err := s.Series(7, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range series {
		got = append(got, p.CloseWait, p.OpenFDs)
	}
	if diff := cmp.Diff([]int{1, 20, 3, 22, 2, 21, 5, 24}, got); diff != "" {
		t.Errorf("series of pid 7 (-want +got):\n%s", diff)
	}
	if p := series[1]; !p.Time.Equal(at(1)) || p.FDLimit != 1024 || p.OldestAge != 3*time.Second || !p.HasAge || p.Comm != "p7" || p.Status != diagnose.Warning {
		t.Errorf("point: %+v", p)
	}
	since, _ := s.Series(7, at(2))
	if len(since) != 2 {
		t.Errorf("series since step 2: %d points, want 2", len(since))
	}
	nine, _ := s.Series(9, time.Time{})
	if len(nine) != 1 || nine[0].CloseWait != 4 {
		t.Errorf("pid 9 reused: series %+v, want only the new process's point", nine)
	}
	if _, ok, _ := s.Last(9, time.Unix(1, 0)); ok {
		t.Error("Last(9) matched the old process after pid reuse")
	}
	if p, ok, _ := s.Last(9, time.Unix(50, 0)); !ok || p.CloseWait != 4 {
		t.Errorf("Last(9, new start) = %+v, %v", p, ok)
	}

	totals, err := s.Totals(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	type tot struct{ CW, Procs, Entered, Left int }
	var gotT []tot
	for _, tp := range totals {
		gotT = append(gotT, tot{tp.CloseWait, tp.Processes, tp.Entered, tp.Left})
	}
	wantT := []tot{{2, 1, 2, 0}, {4, 2, 2, 0}, {3, 1, 1, 2}, {3, 2, 0, 0}}
	if diff := cmp.Diff(wantT, gotT); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if totals[0].States["ESTABLISHED"] != 3 || totals[0].States["CLOSE_WAIT"] != 2 {
		t.Errorf("states: %v", totals[0].States)
	}
	if last, ok, _ := s.LastTotal(); !ok || !last.Time.Equal(at(3)) {
		t.Errorf("LastTotal = %+v, %v", last, ok)
	}

	for _, tc := range []struct {
		inode uint64
		want  time.Time
		ok    bool
	}{{11, at(0), true}, {13, at(1), true}, {14, at(2), true}, {10, time.Time{}, false}, {12, time.Time{}, false}} {
		got, ok := s.FirstSeen(tc.inode)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("FirstSeen(%d) = %v, %v; want %v, %v", tc.inode, got, ok, tc.want, tc.ok)
		}
	}
	if err := s.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "h.db")
	s, err := Open(path, Options{CreateDir: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Record(makeReport(time.Unix(1_800_000_000, 0), []proc{{pid: 1, cw: 2, fds: 3, start: 1}}, []uint64{5})); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Timeout: 100 * time.Millisecond}); err == nil {
		t.Error("a second Open while the first holds the file succeeded")
	}
	s.Close()
	s = open(t, path, Options{})
	if tp, ok, _ := s.LastTotal(); !ok || tp.CloseWait != 1 {
		t.Errorf("after reopen: %+v %v", tp, ok)
	}
	if _, ok := s.FirstSeen(5); !ok {
		t.Error("first-seen lost on reopen")
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, make([]byte, 8192), 0o600)
	for _, tc := range []struct {
		name string
		path string
		opt  Options
	}{
		{"not a store", junk, Options{}},
		{"empty path", "", Options{}},
		{"tiny bound", filepath.Join(dir, "a.db"), Options{MaxBytes: 1000}},
		{"negative age", filepath.Join(dir, "b.db"), Options{MaxAge: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, tc.opt)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
		})
	}
}

// TestOpenRefusesPath: the store is a regular file, or a new file in an
// existing directory; anything else is refused before it is touched.
func TestOpenRefusesPath(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/proc/version", link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"procfs file", "/proc/version", "on procfs"},
		{"symlink to a procfs file", link, "on procfs"},
		{"new file in procfs", "/proc/closewait-history.db", "on procfs"},
		{"sysfs file", "/sys/kernel/uevent_helper", ""},
		{"character device", "/dev/null", "not a regular file (a character device)"},
		{"directory", dir, "not a regular file (a directory)"},
		{"named pipe", fifo, "not a regular file (a named pipe)"},
		{"missing directory tree", filepath.Join(dir, "a", "b", "h.db"), "directory " + filepath.Join(dir, "a", "b") + " does not exist"},
		{"file as directory", filepath.Join("/proc/version", "h.db"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, Options{Timeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open(%s): %q, want one line with %q", tc.path, err, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("a refused path left a directory behind")
	}
	// A new file in an existing directory is fine, and so is a missing
	// directory with CreateDir (the default path).
	open(t, filepath.Join(dir, "new.db"), Options{})
	open(t, filepath.Join(dir, "c", "d", "h.db"), Options{CreateDir: true})
}

func TestAgeBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s := open(t, path, Options{MaxAge: time.Hour})
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 300 {
		// pids come and go, so that empty per-process buckets get removed too
		r := makeReport(t0.Add(time.Duration(i)*time.Minute), []proc{{pid: 1, cw: i, fds: i, start: 1}, {pid: 1000 + i/10, cw: 1, fds: 1, start: 1}}, []uint64{uint64(i), uint64(i + 1)})
		if err := s.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	last := t0.Add(299 * time.Minute)
	totals, _ := s.Totals(time.Time{})
	if len(totals) == 0 || totals[0].Time.Before(last.Add(-time.Hour)) || !totals[len(totals)-1].Time.Equal(last) {
		t.Fatalf("after 300 minutely records with a 1h bound: %d records from %v to %v", len(totals), totals[0].Time, totals[len(totals)-1].Time)
	}
	if len(totals) < 60 {
		t.Errorf("kept %d records, want the last hour's (60)", len(totals))
	}
	in, _ := s.Info()
	if in.Processes > 8 || in.Sockets != 2 {
		t.Errorf("info after pruning: %+v (want ≤ 8 pids: 1 and the last hour's; 2 sockets)", in)
	}
	if ser, _ := s.Series(1, time.Time{}); len(ser) != len(totals) {
		t.Errorf("pid 1 has %d points, want %d", len(ser), len(totals))
	}
	s.Close()
	if _, err := CheckFile(path); err != nil {
		t.Errorf("CheckFile after pruning: %v", err)
	}
}

func TestSizeBound(t *testing.T) {
	const maxBytes = 512 << 10
	path := filepath.Join(t.TempDir(), "h.db")
	s := open(t, path, Options{MaxBytes: maxBytes})
	t0 := time.Unix(1_800_000_000, 0)
	var procs []proc
	for p := range 40 {
		procs = append(procs, proc{pid: 100 + p, cw: p, fds: 2 * p, start: 1})
	}
	inodes := make([]uint64, 1000)
	const n = 1500
	for i := range n {
		for j := range inodes {
			inodes[j] = uint64(i*50 + j) // 50 enter and 50 leave per record
		}
		if err := s.Record(makeReport(t0.Add(time.Duration(i)*time.Second), procs, inodes)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			if fi, err := os.Stat(path); err != nil || fi.Size() > maxBytes {
				t.Fatalf("after %d records the file is %d bytes > bound %d", i+1, fi.Size(), maxBytes)
			}
		}
	}
	fi, _ := os.Stat(path)
	in, err := s.Info()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records: file %d bytes, %d records kept (%v..%v), %d sockets, %d compactions", n, fi.Size(), in.Records, in.Oldest, in.Newest, in.Sockets, s.compactions)
	if fi.Size() > maxBytes {
		t.Errorf("file %d bytes > bound %d", fi.Size(), maxBytes)
	}
	if !in.Newest.Equal(t0.Add((n-1)*time.Second)) || in.Records < 50 || in.Records >= n {
		t.Errorf("kept %d records up to %v: want the newest ones, some dropped", in.Records, in.Newest)
	}
	if in.Sockets != len(inodes) {
		t.Errorf("%d first-seen entries, want %d (the live sockets)", in.Sockets, len(inodes))
	}
	if first, ok := s.FirstSeen(inodes[len(inodes)-1]); !ok || !first.Equal(in.Newest) {
		t.Errorf("newest inode first seen %v %v", first, ok)
	}
	if err := s.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
	// The safe check agrees with bbolt's after churn and compactions.
	s.Close()
	if _, err := CheckFile(path); err != nil {
		t.Errorf("CheckFile after churn: %v", err)
	}
}

// TestSurvivesKill9 kills a process that is writing records in a loop and
// checks that the file reopens consistent with every record it committed.
func TestSurvivesKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envWriter+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		committed := 0
		for sc.Scan() {
			committed, _ = strconv.Atoi(sc.Text())
			if committed >= 30+round*7 {
				break
			}
		}
		// The writer is in its next Record (or about to be): kill it mid-write.
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if committed == 0 {
			t.Fatal("writer committed nothing")
		}

		s, err := Open(path, Options{MaxBytes: 4 << 20})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Errorf("round %d: check after kill -9: %v", round, err)
		}
		last, ok, err := s.LastTotal()
		if err != nil || !ok {
			t.Fatalf("round %d: no records after kill -9: %v", round, err)
		}
		n := int(last.Time.Sub(time.Unix(1_800_000_000, 0)) / time.Second)
		if n < committed {
			t.Errorf("round %d: last record %d, but the writer had committed %d", round, n, committed)
		}
		if ser, _ := s.Series(100, time.Time{}); len(ser) == 0 || ser[len(ser)-1].CloseWait != n {
			t.Errorf("round %d: series of pid 100 does not end at record %d", round, n)
		}
		t.Logf("round %d: killed after %d commits; store holds up to record %d", round, committed, n)
		s.Close()
	}
}

// TestRecordLiveHolder records a real snapshot of a holder process and
// finds its sockets' first-seen times and its series.
func TestRecordLiveHolder(t *testing.T) {
	h := cwtest.Start(t, cwtest.Spec{ReadEOF: 2, Unread: 2})
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	var prev *snapshot.Snapshot
	var first time.Time
	for i := range 2 {
		snap, err := snapshot.TakeAfter(snapshot.Options{}, snapshot.Successive{Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = snap.Time
		}
		prev = snap
		r := diagnose.Analyze(snap, diagnose.DefaultThresholds, diagnose.Options{PIDs: map[int]bool{h.PID: true}})
		if err := s.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	ours := 0
	for _, so := range prev.Sockets {
		for _, c := range h.Conns {
			if so.Local == c.Local && so.Remote == c.Remote && so.Inode != 0 {
				ours++
				if ft, ok := s.FirstSeen(so.Inode); !ok || !ft.Equal(first) {
					t.Errorf("socket %v: first seen %v %v, want %v", c, ft, ok, first)
				}
			}
		}
	}
	if ours != 4 {
		t.Fatalf("found %d of the holder's 4 sockets in the snapshot", ours)
	}
	ser, err := s.Series(h.PID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ser) != 2 || ser[1].CloseWait != 4 || ser[1].StartTime.IsZero() || ser[1].OpenFDs < 4 {
		t.Errorf("holder series: %+v", ser)
	}
}
