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
const verifyByPassMin = 4096

// newReuser returns how findOwners checks a previous owner
// (Options.ReuseByProcess: the owner process is alive, checked once per pid;
// otherwise one readlink per socket, or, with many sockets and a one-pass
// owner source, never: they are all searched again in that pass).
func newReuser(fs procscan.FS, opt config) (still func(procscan.Owner, uint64) bool) {
	still = fs.StillOwns
	if opt.Previous == nil {
		return still
	}
	if !opt.ReuseByProcess && opt.OwnerSource != nil && len(opt.Previous.Sockets) >= verifyByPassMin {
		return func(procscan.Owner, uint64) bool { return false }
	}
	if opt.ReuseByProcess {
		alive := map[int]bool{}
		lastPID, lastAlive := -1, false
		still = func(o procscan.Owner, _ uint64) bool {
			if o.PID == lastPID {
				return lastAlive
			}
			v, ok := alive[o.PID]
			if !ok {
				v = unix.Access(fs.Path(strconv.Itoa(o.PID)), unix.F_OK) == nil
				alive[o.PID] = v
			}
			lastPID, lastAlive = o.PID, v
			return v
		}
	}
	return still
}
