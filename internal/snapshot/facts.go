package snapshot

import (
	"os"
	"strconv"
	"strings"

	"github.com/closewait/closewait/internal/procscan"
)

// Live reports whether the snapshot was read from this host's kernel, as
// opposed to parsed from saved tool output (closewait analyze).
func (snap *Snapshot) Live() bool {
	return snap.Stats.Source == "netlink" || snap.Stats.Source == "procnet"
}

// HasAges reports whether any socket carries an age estimate (tcp_info).
func (snap *Snapshot) HasAges() bool {
	for i := range snap.Sockets {
		if _, ok := snap.Sockets[i].Age(); ok {
			return true
		}
	}
	return false
}

// tcpInUse reads how many TCP sockets (TIME_WAIT aside) a network
// namespace holds, from its sockstat and sockstat6, or 0: closewait's own
// namespace (/proc/net) with pid 0, else that of process pid
// (/proc/PID/net). It bounds how many sockets a dump of the namespace can
// list.
func tcpInUse(fs procscan.FS, pid int) int {
	dir := []string{"net", ""}
	if pid != 0 {
		dir = []string{strconv.Itoa(pid), "net", ""}
	}
	total := 0
	for _, name := range []string{"sockstat", "sockstat6"} {
		dir[len(dir)-1] = name
		b, err := os.ReadFile(fs.Path(dir...))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && (f[0] == "TCP:" || f[0] == "TCP6:") && f[1] == "inuse" {
				n, _ := strconv.Atoi(f[2])
				total += n
			}
		}
	}
	return min(total, 1<<22)
}
