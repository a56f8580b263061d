package snapshot

import "github.com/closewait/closewait/internal/sockdiag"

// carryInfo gives the sockets just dumped without tcp_info (Options.CarryInfo)
// the tcp_info of the same socket in the previous snapshot, with its
// "milliseconds since" fields advanced by the time between the snapshots,
// and asks the kernel (one exact lookup each) for the sockets that are new.
// For an idle CLOSE_WAIT socket this is what the kernel would have said;
// an acknowledged keepalive probe in between is not seen until a snapshot
// without CarryInfo.
func (d *dumper) carryInfo(c *sockdiag.Conn, socks []Socket) {
	prev := d.opt.Previous
	d.prev.rewind(0)
	dt := max(d.snap.Time.Sub(prev.Time), 0)
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
		netns := s.NetNS
		if err := c.Lookup(&s.Socket); err == nil {
			s.NetNS = netns
		}
	}
}
