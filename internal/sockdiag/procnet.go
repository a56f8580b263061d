package sockdiag

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ReadProcNet reads the TCP sockets of procRoot/net/tcp and procRoot/net/tcp6
// (procRoot is usually "/proc"), keeping those in states (zero: all), and calls
// fn for each. It is the fallback when netlink sock_diag is unavailable: there
// is no tcp_info, so HasInfo is false and no age can be estimated. A missing
// tcp6 file (IPv6 disabled) is not an error.
func ReadProcNet(procRoot string, states StateSet, fn func(*Socket) bool) error {
	for _, f := range []struct {
		name   string
		family uint8
	}{{"tcp", syscall.AF_INET}, {"tcp6", syscall.AF_INET6}} {
		path := filepath.Join(procRoot, "net", f.name)
		file, err := os.Open(path)
		if err != nil {
			if f.family == syscall.AF_INET6 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("read %s: %w", path, err)
		}
		stop, err := ParseProcNet(file, f.family, states, fn)
		file.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if stop {
			return nil
		}
	}
	return nil
}

// ParseProcNet parses one /proc/net/tcp or /proc/net/tcp6 table from r.
// stopped is true when fn returned false.
func ParseProcNet(r io.Reader, family uint8, states StateSet, fn func(*Socket) bool) (stopped bool, err error) {
	if states == 0 {
		states = AllStates
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	var s Socket
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // header
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if err := parseProcNetLine(b, family, &s); err != nil {
			return false, fmt.Errorf("line %d: %w", line, err)
		}
		if !states.Has(s.State) {
			continue
		}
		if !fn(&s) {
			return true, nil
		}
	}
	return false, sc.Err()
}

func parseProcNetLine(b []byte, family uint8, s *Socket) error {
	f := bytes.Fields(b)
	// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
	if len(f) < 10 {
		return fmt.Errorf("%d fields, want at least 10", len(f))
	}
	*s = Socket{Family: family}
	var err error
	if s.Local, err = parseHexAddrPort(f[1], family); err != nil {
		return fmt.Errorf("local address: %w", err)
	}
	if s.Remote, err = parseHexAddrPort(f[2], family); err != nil {
		return fmt.Errorf("remote address: %w", err)
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil || st == 0 || st >= uint64(maxState) {
		return fmt.Errorf("bad state %q", f[3])
	}
	s.State = State(st)
	tx, rx, ok := bytes.Cut(f[4], []byte{':'})
	if !ok {
		return fmt.Errorf("bad queues %q", f[4])
	}
	sq, err1 := strconv.ParseUint(string(tx), 16, 32)
	rq, err2 := strconv.ParseUint(string(rx), 16, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad queues %q", f[4])
	}
	s.SendQ, s.RecvQ = uint32(sq), uint32(rq)
	tr, _, ok := bytes.Cut(f[5], []byte{':'})
	if !ok {
		return fmt.Errorf("bad timer %q", f[5])
	}
	t, err := strconv.ParseUint(string(tr), 16, 8)
	if err != nil {
		return fmt.Errorf("bad timer %q", f[5])
	}
	s.Timer = uint8(t)
	uid, err := strconv.ParseUint(string(f[7]), 10, 32)
	if err != nil {
		return fmt.Errorf("bad uid %q", f[7])
	}
	s.UID = uint32(uid)
	ino, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil {
		return fmt.Errorf("bad inode %q", f[9])
	}
	s.Inode = ino
	return nil
}

// parseHexAddrPort reads "0100007F:1F90": the address as the kernel's 32-bit
// words printed in host byte order, the port in hex.
func parseHexAddrPort(b []byte, family uint8) (netip.AddrPort, error) {
	a, p, ok := bytes.Cut(b, []byte{':'})
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q has no port", b)
	}
	port, err := strconv.ParseUint(string(p), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", b)
	}
	want := 8
	if family == syscall.AF_INET6 {
		want = 32
	}
	if len(a) != want {
		return netip.AddrPort{}, fmt.Errorf("address %q is %d hex digits, want %d", a, len(a), want)
	}
	var raw [16]byte
	if _, err := hex.Decode(raw[:want/2], a); err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", a)
	}
	// Each 32-bit word was printed from host order: swap back to network order.
	for i := 0; i < want/2; i += 4 {
		w := binary.BigEndian.Uint32(raw[i:])
		binary.NativeEndian.PutUint32(raw[i:], w)
	}
	var addr netip.Addr
	if family == syscall.AF_INET6 {
		addr = netip.AddrFrom16(raw).Unmap()
	} else {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
