package snapshot

import (
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/closewait/closewait/internal/procscan"
)

// verifyByPassMin is the number of previous sockets from which a verifying
// snapshot with a one-pass owner source (the eBPF iterator) finds every
// owner again in one pass instead of one readlink per socket: a readlink
// costs about 5 µs, a pass well under 1 µs per fd on the host.
var verifyByPassMin = 4096 // a variable for tests

// newReuser returns how findOwners checks a previous owner
// (Options.ReuseByProcess: the owner process is alive, checked once per pid;
// otherwise one readlink per socket, or, with many sockets and a one-pass
// owner source, never: they are all searched again in that pass, and
// never is true).
func newReuser(fs procscan.FS, opt config) (still func(procscan.Owner, uint64) bool, never bool) {
	still = fs.StillOwns
	if opt.Previous == nil {
		return still, false
	}
	if !opt.ReuseByProcess && opt.OwnerSource != nil && len(opt.Previous.Sockets) >= verifyByPassMin {
		return func(procscan.Owner, uint64) bool { return false }, true
	}
	if opt.ReuseByProcess {
		alive := map[int]bool{}
		var known, living pidCache // answers for the pids seen last, without a map lookup
		still = func(o procscan.Owner, _ uint64) bool {
			if known.has(o.PID) {
				return living.has(o.PID)
			}
			v, ok := alive[o.PID]
			if !ok {
				v = unix.Access(fs.Path(strconv.Itoa(o.PID)), unix.F_OK) == nil
				alive[o.PID] = v
			}
			known.add(o.PID)
			if v {
				living.add(o.PID)
			} else {
				living.remove(o.PID)
			}
			return v
		}
	}
	return still, false
}

// pidCache is a set of the pids added last, at most one per slot of pid
// modulo its size: a socket's owner is looked up in it without a map
// operation (the owners of a snapshot's sockets are a few processes, their
// sockets interleaved in the kernel's hash order). A pid absent from it
// may have been added earlier and pushed out.
type pidCache [256]int32 // pid+1; 0: empty

func (c *pidCache) has(pid int) bool { return c[pid&255] == int32(pid+1) }
func (c *pidCache) add(pid int)      { c[pid&255] = int32(pid + 1) }
func (c *pidCache) remove(pid int) {
	if c.has(pid) {
		c[pid&255] = 0
	}
}
