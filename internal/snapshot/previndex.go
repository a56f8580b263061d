package snapshot

// prevIndex finds the sockets of the previous snapshot by inode, for the
// incremental snapshots of watch and agent (owners and tcp_info carried
// over). Two dumps list sockets in the kernel's hash-table order, which
// changes little between ticks, so a lookup made in dump order first tries
// the place after the previous hit. Only when that misses does it consult
// a bitset of the previous inodes (cheap to build), and only when the bit
// is set does it build a map: a socket that is new since the last tick
// usually costs no map at all.
type prevIndex struct {
	socks   [][]Socket // the previous snapshot's sockets and listeners
	cur     [2]int     // list and position after the last hit
	bits    []uint64
	byInode map[uint64][2]int32
}

const prevIndexWindow = 8 // how far ahead of the cursor to look for a hit

func newPrevIndex(prev *Snapshot) *prevIndex {
	if prev == nil {
		return nil
	}
	return &prevIndex{socks: [][]Socket{prev.Sockets, prev.Listeners}}
}

// buildBits fills the bitset on the first miss: a snapshot built from the
// change feed carries its sockets' owners and tcp_info, and asks only about
// the few new ones.
func (x *prevIndex) buildBits() {
	n := len(x.socks[0]) + len(x.socks[1])
	words := 1
	for words*64 < 16*n {
		words *= 2
	}
	x.bits = make([]uint64, words)
	for _, list := range x.socks {
		for i := range list {
			b := x.bit(list[i].Inode)
			x.bits[b/64] |= 1 << (b % 64)
		}
	}
}

func (x *prevIndex) bit(ino uint64) uint64 {
	return (ino * 0x9E3779B97F4A7C15 >> 7) % uint64(len(x.bits)*64)
}

// rewind starts a new pass in dump order over the previous sockets (list
// 0) or listeners (list 1).
func (x *prevIndex) rewind(list int) {
	if x != nil {
		x.cur = [2]int{list, 0}
	}
}

// find returns the previous socket with this inode, or nil. Inode 0 (no
// file yet) never matches.
func (x *prevIndex) find(ino uint64) *Socket {
	if x == nil || ino == 0 {
		return nil
	}
	list := x.socks[x.cur[0]]
	for j := x.cur[1]; j < len(list) && j < x.cur[1]+prevIndexWindow; j++ {
		if list[j].Inode == ino {
			x.cur[1] = j + 1
			return &list[j]
		}
	}
	if x.bits == nil {
		x.buildBits()
	}
	if b := x.bit(ino); x.bits[b/64]&(1<<(b%64)) == 0 {
		return nil
	}
	if x.byInode == nil {
		x.byInode = make(map[uint64][2]int32, len(x.socks[0])+len(x.socks[1]))
		for l, list := range x.socks {
			for i := range list {
				if list[i].Inode != 0 {
					x.byInode[list[i].Inode] = [2]int32{int32(l), int32(i)}
				}
			}
		}
	}
	at, ok := x.byInode[ino]
	if !ok {
		return nil
	}
	x.cur = [2]int{int(at[0]), int(at[1]) + 1}
	return &x.socks[at[0]][at[1]]
}
