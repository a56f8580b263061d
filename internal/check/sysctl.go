// Package check reviews a host for what matters to CLOSE_WAIT: the fd limits
// of the processes holding CLOSE_WAIT sockets, the system-wide file limits,
// and the TCP sysctls people reach for (keepalive, tcp_fin_timeout), saying
// in plain words which of them matter here and which do not.
//
// Reading ([ReadSysctls], [Holders]) is kept apart from judging ([Review]),
// which is pure and tested on fake /proc/sys trees under testdata.
package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sysctls are the kernel settings check reads, from /proc/sys.
// A setting that could not be read is zero and named in Missing.
type Sysctls struct {
	FileMax         uint64 // fs.file-max: system-wide limit of open files
	NrOpen          uint64 // fs.nr_open: ceiling of any process's RLIMIT_NOFILE
	FileAllocated   uint64 // fs.file-nr, first field: file handles allocated now
	HasFileNr       bool
	KeepaliveTime   time.Duration // net.ipv4.tcp_keepalive_time
	KeepaliveIntvl  time.Duration // net.ipv4.tcp_keepalive_intvl
	KeepaliveProbes int           // net.ipv4.tcp_keepalive_probes
	FinTimeout      time.Duration // net.ipv4.tcp_fin_timeout
	Missing         []string      // "net.ipv4.tcp_fin_timeout: no such file"
}

// Sysctl names, as sysctl(8) spells them.
const (
	FileMax         = "fs.file-max"
	NrOpen          = "fs.nr_open"
	FileNr          = "fs.file-nr"
	KeepaliveTime   = "net.ipv4.tcp_keepalive_time"
	KeepaliveIntvl  = "net.ipv4.tcp_keepalive_intvl"
	KeepaliveProbes = "net.ipv4.tcp_keepalive_probes"
	FinTimeout      = "net.ipv4.tcp_fin_timeout"
)

// ReadSysctls reads the settings under root, the mount point of /proc/sys.
// It fails only when root itself cannot be read; missing settings are
// listed in Missing.
func ReadSysctls(root string) (*Sysctls, error) {
	if _, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("read sysctls: %w", err)
	}
	s := &Sysctls{}
	read := func(name string) []string {
		b, err := os.ReadFile(filepath.Join(root, strings.ReplaceAll(name, ".", "/")))
		if err != nil {
			s.Missing = append(s.Missing, name+": "+errText(err))
			return nil
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			s.Missing = append(s.Missing, name+": empty")
		}
		return f
	}
	num := func(name string, f []string, i int) (uint64, bool) {
		if len(f) <= i {
			return 0, false
		}
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			s.Missing = append(s.Missing, fmt.Sprintf("%s: %q is not a number", name, f[i]))
			return 0, false
		}
		return n, true
	}
	s.FileMax, _ = num(FileMax, read(FileMax), 0)
	s.NrOpen, _ = num(NrOpen, read(NrOpen), 0)
	s.FileAllocated, s.HasFileNr = num(FileNr, read(FileNr), 0)
	secs := func(name string) time.Duration {
		n, _ := num(name, read(name), 0)
		return time.Duration(min(n, 1<<31)) * time.Second
	}
	s.KeepaliveTime = secs(KeepaliveTime)
	s.KeepaliveIntvl = secs(KeepaliveIntvl)
	p, _ := num(KeepaliveProbes, read(KeepaliveProbes), 0)
	s.KeepaliveProbes = int(min(p, 1<<16))
	s.FinTimeout = secs(FinTimeout)
	return s, nil
}

func errText(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}
