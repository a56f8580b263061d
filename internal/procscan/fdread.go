package procscan

import (
	"bytes"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdReader reads fd tables with reused buffers: one open, getdents and a
// readlinkat per fd, no allocation per fd.
type fdReader struct {
	dirent []byte
	link   []byte
}

func newFDReader() *fdReader {
	return &fdReader{dirent: make([]byte, 32<<10), link: make([]byte, 256)}
}

var socketPrefix = []byte("socket:[")

// each calls fn for every socket fd in the fd directory at path, with the fd
// number and socket inode. It returns the number of fd links read. Fds that
// vanish between getdents and readlinkat are skipped.
func (r *fdReader) each(path string, fn func(fd int, inode uint64)) (int, error) {
	dfd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(dfd)
	count := 0
	for {
		n, err := unix.ReadDirent(dfd, r.dirent)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return count, err
		}
		if n <= 0 {
			return count, nil
		}
		b := r.dirent[:n]
		for len(b) >= 19 {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			fd, ok := atoiBytes(name)
			if !ok {
				continue // "." and ".."
			}
			count++
			ln, err := readlinkat(dfd, name, r.link)
			if err != nil {
				continue // fd closed since getdents
			}
			if ino, ok := parseSocketLink(r.link[:ln]); ok {
				fn(fd, ino)
			}
		}
	}
}

// readlinkat calls readlinkat(2) with a name given as bytes, without
// allocating a string: the name is copied into a NUL-terminated stack buffer.
func readlinkat(dirfd int, name []byte, buf []byte) (int, error) {
	var nb [32]byte
	if len(name) >= len(nb) {
		return 0, unix.ENAMETOOLONG
	}
	copy(nb[:], name)
	nb[len(name)] = 0
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(&nb[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// parseSocketLink reads the inode from a link target "socket:[12345]".
func parseSocketLink(b []byte) (uint64, bool) {
	if !bytes.HasPrefix(b, socketPrefix) || len(b) < len(socketPrefix)+2 || b[len(b)-1] != ']' {
		return 0, false
	}
	var v uint64
	for _, c := range b[len(socketPrefix) : len(b)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// atoiBytes parses a non-negative decimal number without allocating.
func atoiBytes[T string | []byte](s T) (int, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}
