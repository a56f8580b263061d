package history

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goodStore writes a store of a few hundred records and returns its bytes.
func goodStore(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "good.db")
	s := open(t, path, Options{})
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 200 {
		inodes := make([]uint64, 50)
		for j := range inodes {
			inodes[j] = uint64(i*10 + j)
		}
		r := makeReport(t0.Add(time.Duration(i)*time.Minute), []proc{{pid: 7, cw: i, fds: 20 + i, start: 1}, {pid: 9, cw: 1, fds: 5, start: 1}}, inodes)
		if err := s.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64<<10 {
		t.Fatalf("store is %d bytes, want more than 64 KiB to damage", len(b))
	}
	return b
}

// TestOpenDamagedStore damages a store the ways a disk, a full filesystem or
// a careless hand does, and opens it: Open must refuse it with ErrDamaged,
// without a panic or a fault, and leave the file as it was.
func TestOpenDamagedStore(t *testing.T) {
	good := goodStore(t)
	// Where the newest transaction's data lies (white-box: the test must
	// damage pages in use, not spare space).
	f, err := os.CreateTemp(t.TempDir(), "layout")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(good)
	m0, _, _ := readMeta(f, 0)
	m1, _, _ := readMeta(f, int64(m0.pageSize))
	f.Close()
	meta, ps := m0, int(m0.pageSize)
	if m1.txid > m0.txid {
		meta = m1
	}
	if meta.root == 4 || meta.freelist == 4 || meta.hwm < 8 {
		t.Fatalf("layout %+v: want page 4 to hold records, as in the issue", meta)
	}
	overwrite := func(off int, b []byte) func([]byte) []byte {
		return func(f []byte) []byte { copy(f[off:], b); return f }
	}
	noise := make([]byte, ps)
	rand.Read(noise)
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to 16 KiB", func(f []byte) []byte { return f[:16<<10] }},
		{"truncated inside its data", func(f []byte) []byte { return f[:(int(meta.hwm)-1)*ps] }},
		{"truncated to one page", func(f []byte) []byte { return f[:ps] }},
		{"bytes overwritten at 16384", overwrite(16384, []byte("closewait!"))},
		{"page type overwritten at 16384", overwrite(16384+8, []byte{0x20})},
		{"element count overwritten at 16384", overwrite(16384+10, []byte{0xff, 0x7f})},
		{"noise over the root page", overwrite(int(meta.root)*ps, noise)},
		{"noise over the freelist page", overwrite(int(meta.freelist)*ps, noise)},
		{"both meta pages overwritten", func(f []byte) []byte {
			copy(f[16+40:], "xxxxxxxx")
			copy(f[ps+16+40:], "xxxxxxxx")
			return f
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "h.db")
			damaged := tc.damage(bytes.Clone(good))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a damaged store")
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Open: %v; want ErrDamaged", err)
			}
			if n := bytes.Count([]byte(err.Error()), []byte("\n")); n > 0 {
				t.Errorf("error spans %d lines: %q", n+1, err)
			}
			t.Log(err)
			after, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !bytes.Equal(after, damaged) {
				t.Error("Open modified the damaged file")
			}
			if _, err := CheckFile(path); !errors.Is(err, ErrDamaged) {
				t.Errorf("CheckFile: %v; want ErrDamaged", err)
			}
		})
	}
	t.Run("undamaged", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "h.db")
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if in, err := CheckFile(path); err != nil || in.Records != 200 {
			t.Fatalf("CheckFile of a good store: %+v, %v", in, err)
		}
		s := open(t, path, Options{})
		if in, err := s.Info(); err != nil || in.Records != 200 {
			t.Errorf("Info = %+v, %v; want 200 records", in, err)
		}
	})
}
