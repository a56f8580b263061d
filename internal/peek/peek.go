// Package peek reads the bytes waiting unread in another process's socket
// without consuming them: the data a peer sent that the application never
// read, often the peer's last words before it closed (a database's
// "FATAL: terminating connection due to idle-session timeout", an SMTP 421).
//
// It duplicates the socket's fd into this process with pidfd_open and
// pidfd_getfd (Linux 5.6 or later; the caller needs ptrace access to the
// target: root, CAP_SYS_PTRACE, or the same user under Yama scope 0), reads
// the receive queue with recv(MSG_PEEK|MSG_DONTWAIT) on the duplicate, and
// closes the duplicate. MSG_PEEK leaves the data queued for the application,
// and closing a duplicate fd leaves the socket open and in its state, so the
// socket is exactly as it was.
//
// What it returns is application data, which may hold anything the peer sent
// (queries, tokens, personal data): callers must read it only when the user
// asks for it explicitly (closewait explain --peek) and must mark it as such.
package peek

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Errors that Unread wraps, for callers that explain them to the user.
var (
	// ErrPermission: this process may not duplicate the target's fds (it
	// needs ptrace access: root or CAP_SYS_PTRACE over the target, or Yama
	// forbids it).
	ErrPermission = errors.New("no permission to read another process's fds (needs ptrace access: run as root or with CAP_SYS_PTRACE)")
	// ErrNotSupported: the kernel lacks pidfd_open or pidfd_getfd (Linux < 5.6).
	ErrNotSupported = errors.New("not supported by this kernel (pidfd_getfd needs Linux 5.6 or later)")
	// ErrGone: the process exited, or the fd was closed or now refers to
	// another file.
	ErrGone = errors.New("process or fd gone")
)

// MaxText is the most bytes of the peer's data that Printable shows.
const MaxText = 120

// Unread returns up to max bytes waiting in the receive queue of the socket
// that process pid holds as fd, without consuming them. When inode is
// nonzero it must be the socket's inode (from the snapshot), so that an fd
// closed and reused since then is not read: a mismatch is ErrGone. An
// empty result means nothing is queued but, possibly, the FIN.
//
// Errors wrap ErrPermission, ErrNotSupported or ErrGone where they apply.
func Unread(pid, fd int, inode uint64, max int) ([]byte, error) {
	if pid <= 0 || fd < 0 {
		return nil, fmt.Errorf("peek: process %d fd %d: not a process id and fd", pid, fd)
	}
	if max <= 0 {
		return nil, nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("peek: pidfd_open process %d: %w", pid, classify(err))
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("peek: pidfd_getfd process %d fd %d: %w", pid, fd, classify(err))
	}
	defer unix.Close(dup)
	if inode != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(dup, &st); err != nil {
			return nil, fmt.Errorf("peek: process %d fd %d: fstat: %w", pid, fd, err)
		}
		if st.Ino != inode {
			return nil, fmt.Errorf("peek: process %d fd %d is now inode %d, not socket %d: %w", pid, fd, st.Ino, inode, ErrGone)
		}
	}
	buf := make([]byte, max)
	for {
		n, _, err := unix.Recvfrom(dup, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return buf[:0], nil // nothing queued, not even a FIN
		case errors.Is(err, unix.ENOTSOCK):
			return nil, fmt.Errorf("peek: process %d fd %d is not a socket", pid, fd)
		}
		return nil, fmt.Errorf("peek: recv(MSG_PEEK) on process %d fd %d: %w", pid, fd, err)
	}
}

// classify wraps a pidfd error in the sentinel it means.
func classify(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (%w)", ErrPermission, err)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%w (%w)", ErrNotSupported, err)
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF):
		return fmt.Errorf("%w (%w)", ErrGone, err)
	}
	return err
}

// Printable renders at most the first MaxText bytes of b for a terminal or
// a JSON string: valid UTF-8 that unicode.IsPrint accepts is kept; \n, \r,
// \t and the backslash are escaped as in Go; every other byte (controls,
// invisible or direction-changing characters, invalid UTF-8) as \xNN; "…"
// marks a cut.
func Printable(b []byte) string {
	cut := len(b) > MaxText
	if cut {
		b = b[:MaxText]
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == utf8.RuneError && size <= 1, !unicode.IsPrint(r):
			for _, c := range b[:size] {
				fmt.Fprintf(&sb, `\x%02x`, c)
			}
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	if cut {
		sb.WriteString("…")
	}
	return sb.String()
}
