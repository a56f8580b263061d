package snapshot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/closewait/closewait/internal/procscan"
)

// TestTCPInUse reads the TCP sockets in use of closewait's own namespace
// and of a process's, from a recorded /proc layout.
func TestTCPInUse(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("net/sockstat", "sockets: used 1210\nTCP: inuse 12 orphan 0 tw 3 alloc 20 mem 4\nUDP: inuse 2 mem 1\n")
	write("net/sockstat6", "TCP6: inuse 5\nUDP6: inuse 1\n")
	write("4121/net/sockstat", "sockets: used 100000\nTCP: inuse 101003 orphan 0 tw 0 alloc 101010 mem 900\n")
	// 4122: no sockstat6 (IPv6 off); 4123: no such process.
	write("4122/net/sockstat", "TCP: inuse 7 orphan 0 tw 0 alloc 7 mem 1\n")
	fs := procscan.NewFS(root)
	for _, tc := range []struct {
		pid, want int
	}{{0, 17}, {4121, 101003}, {4122, 7}, {4123, 0}} {
		if got := tcpInUse(fs, tc.pid); got != tc.want {
			t.Errorf("tcpInUse(pid %d) = %d, want %d", tc.pid, got, tc.want)
		}
	}
}
