package snapshot

import (
	"math"

	"github.com/closewait/closewait/internal/sockdiag"
)

// carryInfo gives the sockets just dumped without tcp_info (Options.CarryInfo)
// the tcp_info of the same socket in the previous snapshot, with its
// "milliseconds since" fields advanced by the time between the snapshots,
// and asks the kernel (one exact lookup each) for the sockets that are new.
// For an idle CLOSE_WAIT socket this is what the kernel would have said;
// an acknowledged keepalive probe in between is not seen until a snapshot
// without CarryInfo.
func (d *dumper) carryInfo(c *sockdiag.Conn, socks []Socket) {
	prev := d.opt.Previous
	if d.prevInfo == nil {
		d.prevInfo = make(map[uint64]*Socket, len(prev.Sockets))
		for i := range prev.Sockets {
			if s := &prev.Sockets[i]; s.HasInfo && s.Inode != 0 {
				d.prevInfo[s.Inode] = s
			}
		}
	}
	dt := max(d.snap.Time.Sub(prev.Time).Milliseconds(), 0)
	advance := func(v uint32) uint32 { return uint32(min(int64(v)+dt, math.MaxUint32)) }
	for i := range socks {
		s := &socks[i]
		if s.HasInfo {
			continue
		}
		if p, ok := d.prevInfo[s.Inode]; ok && s.Inode != 0 && p.Local == s.Local && p.Remote == s.Remote && p.State == s.State {
			s.Info, s.HasInfo = p.Info, true
			s.Info.LastDataSent = advance(p.Info.LastDataSent)
			s.Info.LastAckRecv = advance(p.Info.LastAckRecv)
			s.Info.LastDataRecv = advance(p.Info.LastDataRecv)
			continue
		}
		netns := s.NetNS
		if err := c.Lookup(&s.Socket); err == nil {
			s.NetNS = netns
		}
	}
}
