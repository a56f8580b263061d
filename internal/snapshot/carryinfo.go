package snapshot

import "github.com/closewait/closewait/internal/sockdiag"

// carryInfo gives the sockets just dumped without tcp_info (Options.CarryInfo)
// the tcp_info of the same socket in the previous snapshot, with its
// "milliseconds since" fields advanced by the time between the snapshots,
// and asks the kernel (exact lookups, batched) for the sockets that are new.
// For an idle CLOSE_WAIT socket this is what the kernel would have said;
// an acknowledged keepalive probe in between is not seen until a snapshot
// without CarryInfo.
func (d *dumper) carryInfo(c *sockdiag.Conn, socks []Socket) {
	prev := d.opt.Previous
	d.prev.rewind(0)
	dt := max(d.snap.Time.Sub(prev.Time), 0)
	var ask []int // new sockets, looked up in one batch
	for i := range socks {
		s := &socks[i]
		if s.HasInfo {
			continue
		}
		if p := d.prev.find(s.Inode); p != nil && p.HasInfo && p.Local == s.Local && p.Remote == s.Remote && p.State == s.State {
			s.Info, s.HasInfo = p.Info, true
			advanceInfo(&s.Info, dt)
			continue
		}
		ask = append(ask, i)
	}
	if len(ask) == 0 {
		return
	}
	found := make([]sockdiag.Socket, len(ask))
	for j, i := range ask {
		found[j] = socks[i].Socket
	}
	errs, err := c.LookupAll(found)
	if err != nil {
		return // they keep no tcp_info, as a socket closed in between would
	}
	for j, i := range ask {
		if errs[j] == nil {
			netns := socks[i].NetNS
			socks[i].Socket = found[j]
			socks[i].NetNS = netns
		}
	}
}
