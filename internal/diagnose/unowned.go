package diagnose

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/closewait/closewait/internal/procscan"
	"github.com/closewait/closewait/internal/snapshot"
)

// UnownedGroup is a set of CLOSE_WAIT sockets no visible process holds,
// grouped by what netlink shows any user: the socket's uid and where the
// sockets concentrate (the local listening port, or the remote address).
// Without privilege these are most of a host's sockets; they are judged
// with what is visible (count and age) and explained by Recv-Q.
type UnownedGroup struct {
	UID  uint32
	User string // the uid's name, or its number
	// Inbound sockets were accepted from the listening port LocalPort;
	// outbound ones go to Remote.
	Inbound   bool
	LocalPort uint16
	Remote    string
	Count     int
	Oldest    time.Duration
	HasAge    bool
	// Causes counts the group's sockets by socket cause (Recv-Q, accept queue).
	Causes  map[string]int
	Status  Status
	Reasons []string
}

// unownedKey is where unowned sockets concentrate.
type unownedKey struct {
	uid     uint32
	inbound bool
	port    uint16
	remote  netip.AddrPort
}

// MaxUnownedGroups bounds the groups reported; the smallest beyond it are
// left out of the list (they stay in the count). The text report shows
// fewer.
const MaxUnownedGroups = 100

// unownedGroups groups the sockets with no owner.
type unownedGroups struct {
	by map[unownedKey]*UnownedGroup
}

func (u *unownedGroups) add(s *snapshot.Socket, age time.Duration, hasAge bool) {
	if u.by == nil {
		u.by = map[unownedKey]*UnownedGroup{}
	}
	k := unownedKey{uid: s.UID, inbound: s.Inbound()}
	if k.inbound {
		k.port = s.Listener().Port()
	} else {
		k.remote = netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())
	}
	g := u.by[k]
	if g == nil {
		g = &UnownedGroup{UID: k.uid, Inbound: k.inbound, LocalPort: k.port, Causes: map[string]int{}}
		if !k.inbound {
			g.Remote = k.remote.String()
		}
		u.by[k] = g
	}
	g.Count++
	g.Causes[socketCauses[causeOf(s)].ID]++
	if hasAge {
		g.HasAge = true
		g.Oldest = max(g.Oldest, age)
	}
}

// groups judges the groups and returns the largest, worst first.
func (u *unownedGroups) groups(th Thresholds) []UnownedGroup {
	var out []UnownedGroup
	for _, g := range u.by {
		g.User = procscan.UserName(g.UID)
		g.Status, g.Reasons = th.Judge(g.Count, 0, g.Oldest, g.HasAge)
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b UnownedGroup) int {
		return cmp.Or(cmp.Compare(b.Status, a.Status), cmp.Compare(b.Count, a.Count), cmp.Compare(a.UID, b.UID),
			cmp.Compare(a.LocalPort, b.LocalPort), cmp.Compare(a.Remote, b.Remote))
	})
	if len(out) > MaxUnownedGroups {
		out = out[:MaxUnownedGroups]
	}
	return out
}

// Where is "on port 8080" or "to 10.0.3.7:5432".
func (g *UnownedGroup) Where() string {
	if g.Inbound {
		return fmt.Sprintf("on port %d", g.LocalPort)
	}
	return "to " + g.Remote
}

// Cause is the group's most common socket cause.
func (g *UnownedGroup) Cause() string {
	best, n := "", 0
	for _, c := range socketCauses {
		if g.Causes[c.ID] > n {
			best, n = c.ID, g.Causes[c.ID]
		}
	}
	return best
}

// UnownedHint says once what privilege would add to unowned sockets.
const UnownedHint = "run as root (or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) to name the processes, their fds and fd limits, runtimes and threads"
