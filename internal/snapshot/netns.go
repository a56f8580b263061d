package snapshot

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"strconv"

	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/sockdiag"
)

// dumper lists one namespace's sockets into the snapshot: count sees the
// sockets of the states that are only counted, keep those listed in full.
type dumper struct {
	snap        *Snapshot
	opt         config
	count, keep func(*sockdiag.Socket) bool
	seen        map[uint64]bool
	denied      int
	prev        *prevIndex // Options.Previous, by inode
	changes     *changeSet // what the change feed said; nil without one
	// reserve: no earlier snapshot sized Sockets, so room is made for each
	// namespace's sockets before it is dumped (reserveFor).
	reserve bool
}

func (d *dumper) wanted(ino uint64) bool {
	return !d.seen[ino] && (d.opt.NetNS == nil || d.opt.NetNS[ino])
}

// conn dumps the namespace c was opened in: one counting dump of the states
// not listed (none with Options.ListedOnly), one listing dump (with
// tcp_info) of the detail states and LISTEN; with Options.CarryInfo, one
// dump of every state without tcp_info.
func (d *dumper) conn(c *sockdiag.Conn) error {
	detail := d.snap.Detail
	d.seen[c.NetNS()] = true
	if d.changes != nil && d.changes.apply {
		return d.applyChanges(c)
	}
	rest := sockdiag.AllStates &^ detail &^ sockdiag.NewStateSet(sockdiag.Listen)
	if d.opt.CarryInfo && d.opt.Previous != nil {
		// No tcp_info asked: one walk of the kernel's tables lists and counts.
		start := len(d.snap.Sockets)
		err := c.Dump(sockdiag.Request{States: sockdiag.AllStates}, func(s *sockdiag.Socket) bool {
			if rest.Has(s.State) {
				return d.count(s)
			}
			return d.keep(s)
		})
		if err != nil {
			return fmt.Errorf("list sockets: %w", err)
		}
		d.carryInfo(c, d.snap.Sockets[start:])
		return nil
	}
	list := sockdiag.Request{States: detail | sockdiag.NewStateSet(sockdiag.Listen), Info: true}
	if d.opt.ListedOnly {
		if err := c.Dump(list, d.keep); err != nil {
			return fmt.Errorf("list sockets: %w", err)
		}
		return nil
	}
	// Count the other states on another core while this one lists the
	// detail states.
	counted := make(chan error, 1)
	var counts [16]int
	go func() {
		var err error
		counts, err = countIn(c.NetNS(), rest)
		counted <- err
	}()
	listErr := c.Dump(list, d.keep)
	if err := <-counted; err != nil {
		if err := c.Dump(sockdiag.Request{States: rest}, d.count); err != nil {
			return fmt.Errorf("count sockets: %w", err)
		}
	} else {
		for st, n := range counts {
			if n > 0 {
				d.snap.States[sockdiag.State(st)] += n
			}
		}
	}
	if listErr != nil {
		return fmt.Errorf("list sockets: %w", listErr)
	}
	return nil
}

// countIn counts the sockets of closewait's own namespace (inode ino) in
// the states of rest with a sock_diag dump on a second netlink socket. An
// error (errOtherNetNS for another namespace) means the caller counts on
// its own socket.
func countIn(ino uint64, rest sockdiag.StateSet) ([16]int, error) {
	var counts [16]int
	c2, err := sockdiag.Dial()
	if err == nil && c2.NetNS() != ino {
		err = errOtherNetNS // opened in closewait's namespace, not c's
	}
	if err != nil {
		if c2 != nil {
			c2.Close()
		}
		return counts, err
	}
	defer c2.Close()
	err = c2.Dump(sockdiag.Request{States: rest}, func(s *sockdiag.Socket) bool { counts[s.State&15]++; return true })
	return counts, err
}

var errOtherNetNS = errors.New("second netlink socket is in another network namespace")

// others dumps every network namespace other than the current one (already
// dumped on c), each through a netlink socket opened inside it. A namespace
// that cannot be read becomes a notice, not a failure.
func (d *dumper) others(fs procscan.FS, procNet bool) {
	list, err := netns.List(fs.Root())
	if err != nil {
		d.snap.Notices = append(d.snap.Notices, "other network namespaces not read: "+err.Error())
		return
	}
	for _, ns := range list {
		if ns.Current {
			if len(d.snap.Namespaces) > 0 && d.snap.Namespaces[0].Current {
				d.snap.Namespaces[0].PID, d.snap.Namespaces[0].Name, d.snap.Namespaces[0].Path = ns.PID, ns.Name, ns.Path
			}
			continue
		}
		if !d.wanted(ns.Inode) {
			continue
		}
		if procNet {
			if ns.PID == 0 {
				continue // no process to read /proc/PID/net/tcp through
			}
			d.seen[ns.Inode] = true
			d.reserveFor(fs, ns.PID)
			ino := ns.Inode
			label := func(s *sockdiag.Socket) bool { s.NetNS = ino; return d.keep(s) }
			if err := sockdiag.ReadProcNet(filepath.Join(fs.Root(), strconv.Itoa(ns.PID)), 0, label); err != nil {
				d.notRead(ns, err)
				continue
			}
			d.snap.Namespaces = append(d.snap.Namespaces, ns)
			continue
		}
		c, err := DialNetNS(ns.Path)
		if err != nil {
			d.notRead(ns, err)
			continue
		}
		if c.NetNS() != ns.Inode && !d.wanted(c.NetNS()) {
			c.Close() // the pid was reused by a process of a namespace already read
			continue
		}
		ns.Inode = c.NetNS()
		if ns.PID != 0 {
			d.reserveFor(fs, ns.PID)
		}
		start := len(d.snap.Sockets)
		err = d.conn(c)
		d.snap.noteRun(c.NetNS(), start) // what was listed, also if it failed half-way
		c.Close()
		if err != nil {
			d.snap.Notices = append(d.snap.Notices, fmt.Sprintf("network namespace %v not read: %v", ns, err))
			continue
		}
		d.snap.Namespaces = append(d.snap.Namespaces, ns)
	}
	if d.denied > 0 {
		d.snap.Partial = true
		d.snap.Notices = append(d.snap.Notices, fmt.Sprintf(
			"sockets of %d other network namespaces (containers) are not shown: entering them needs CAP_SYS_ADMIN (run as root)", d.denied))
	}
}

// reserveFor makes room, when no earlier snapshot sized Sockets, for the
// TCP sockets in use of the namespace about to be dumped: closewait's own
// with pid 0, else that of process pid. Only namespaces that are read
// count (a closewait trace of a container's process reserved for the
// host's sockets too), and the slice is copied at most once a namespace
// instead of regrown a quarter at a time (58 MB of garbage for trace at
// 100k sockets).
func (d *dumper) reserveFor(fs procscan.FS, pid int) {
	if d.reserve {
		d.snap.reserve(tcpInUse(fs, pid))
	}
}

// notRead accounts for a namespace that could not be read: a notice, or a
// count of the namespaces denied; nothing for one gone since it was listed
// (its last process exited, its name was deleted: a race with /proc that
// leaves no sockets unread).
func (d *dumper) notRead(ns netns.Namespace, err error) {
	switch {
	case errors.Is(err, iofs.ErrNotExist):
	case errors.Is(err, netns.ErrPermission):
		// Count namespaces that hold processes the user can see; a bare
		// name under /run/netns (readable by anyone) is skipped quietly.
		if ns.PID != 0 {
			d.denied++
		}
	default:
		d.snap.Notices = append(d.snap.Notices, fmt.Sprintf("network namespace %v not read: %v", ns, err))
	}
}

// NamespaceOf returns the network namespace with inode ino that the snapshot
// read, and whether there is one.
func (snap *Snapshot) NamespaceOf(ino uint64) (netns.Namespace, bool) {
	for _, ns := range snap.Namespaces {
		if ns.Inode == ino {
			return ns, true
		}
	}
	return netns.Namespace{}, false
}

// DialNetNS opens a sock_diag socket inside the network namespace at path
// (/proc/PID/ns/net or /run/netns/NAME); the socket keeps that namespace.
// Entering it needs CAP_SYS_ADMIN (netns.ErrPermission without).
func DialNetNS(path string) (*sockdiag.Conn, error) {
	var c *sockdiag.Conn
	err := netns.Do(path, func() error {
		var err error
		c, err = sockdiag.Dial()
		return err
	})
	return c, err
}
