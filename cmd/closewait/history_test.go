package main

import (
	"bytes"
	bin "encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newestMeta reads the page size, root and freelist pages and page count of
// the newest transaction from a bbolt file's two meta pages (format version 2).
func newestMeta(t *testing.T, b []byte) (pageSize, root, freelist, pages int) {
	t.Helper()
	le := bin.LittleEndian
	best := uint64(0)
	for _, off := range []int{0, int(le.Uint32(b[16+8:]))} {
		m := b[off+16:]
		if le.Uint32(m) != 0xED0CDAED {
			t.Fatalf("no bbolt meta page at %d", off)
		}
		if txid := le.Uint64(m[48:]); txid >= best {
			best = txid
			pageSize, root, freelist, pages = int(le.Uint32(m[8:])), int(le.Uint64(m[16:])), int(le.Uint64(m[32:])), int(le.Uint64(m[40:]))
		}
	}
	return pageSize, root, freelist, pages
}

// recordedStore returns the bytes of a history store written by real runs
// of `closewait --history`, holding more than 16 KiB of pages.
func recordedStore(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.db")
	for i := range 20 {
		if r := run(t, nil, "--history="+path); r.code == 3 {
			t.Fatalf("closewait --history: exit 3: %s", r.stderr)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if ps, _, _, pages := newestMeta(t, b); i >= 2 && pages*ps > 16<<10 {
			return b
		}
	}
	t.Fatal("20 runs wrote no more than 16 KiB of history")
	return nil
}

// TestDamagedHistory: a damaged store is reported in one line with exit 3
// by the report and watch, and left as it was; the agent keeps serving
// without it and says so on /healthz, in its notices and in a metric.
func TestDamagedHistory(t *testing.T) {
	good := recordedStore(t)
	ps, root, freelist, _ := newestMeta(t, good)
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to 16 KiB", func(b []byte) []byte { return b[:16<<10] }},
		{"root page overwritten", func(b []byte) []byte { copy(b[root*ps:], "closewait!"); return b }},
		{"freelist page overwritten", func(b []byte) []byte { copy(b[freelist*ps+8:], []byte{0xff, 0xff, 0xff, 0xff}); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			damaged := tc.damage(bytes.Clone(good))
			path := filepath.Join(t.TempDir(), "h.db")
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"--history=" + path},
				{"--json", "--history=" + path},
				{"watch", "--plain", "--count", "1", "--history=" + path},
				{"history", "check", path},
			} {
				r := run(t, nil, args...)
				if r.code != 3 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "damaged store") || r.stdout != "" {
					t.Errorf("closewait %s: exit %d, stdout %.200q, stderr %q; want exit 3 and one line", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
			url, cmd, _ := startAgent(t, nil, "--interval", "1s", "--history", path)
			// The probe's agent died 3 s after start: wait for two scans.
			code, body := 0, ""
			for i := 0; i < 120 && !strings.Contains(body, "closewait_scans_total 2"); i++ {
				time.Sleep(500 * time.Millisecond)
				_, body = httpGet(t, url+"/metrics")
			}
			if code, body = httpGet(t, url+"/healthz"); code != 200 || !strings.Contains(body, "history kept in memory only") {
				t.Errorf("/healthz: %d %q", code, body)
			}
			if _, body := httpGet(t, url+"/metrics"); !strings.Contains(body, "\nclosewait_history_file_ok 0\n") {
				t.Errorf("/metrics has no closewait_history_file_ok 0")
			}
			if _, body := httpGet(t, url+"/api/v1/snapshot"); !strings.Contains(body, "history kept in memory only") {
				t.Errorf("/api/v1/snapshot notices do not say the history is not kept: %.400s", body)
			}
			if cmd.ProcessState != nil {
				t.Errorf("agent exited: %v", cmd.ProcessState)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, damaged) {
				t.Error("the damaged file was modified")
			}
		})
	}
}

// TestHistoryPathRefused: --history refuses what is not a regular file or a
// new file in an existing directory, with one line and exit 3.
func TestHistoryPathRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		path, want string
	}{
		{"/proc/version", "on procfs"},
		{"/dev/null", "not a regular file"},
		{dir, "not a regular file"},
		{filepath.Join(dir, "a", "b", "h.db"), "does not exist"},
	} {
		for _, args := range [][]string{
			{"--history=" + tc.path},
			{"watch", "--plain", "--count", "1", "--history=" + tc.path},
			{"agent", "--listen", "127.0.0.1:0", "--history", tc.path},
		} {
			r := run(t, nil, args...)
			if r.code != 3 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("closewait %s: exit %d, stderr %q; want exit 3 and one line with %q", strings.Join(args, " "), r.code, r.stderr, tc.want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("a refused --history created a directory")
	}
}
