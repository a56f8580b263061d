package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Records are stored as a version byte and unsigned varints: a point is
// about 20 bytes, a host record about 30.
const (
	pointV1 = 1
	totalV1 = 1
)

var errCorrupt = errors.New("corrupt record")

func timeKey(t time.Time) []byte { return u64Key(uint64(max(t.UnixNano(), 0))) }

func u64Key(v uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, v)
	return k
}

// pointKey is a process point's key: time, then pid, big-endian, so that
// each record appends at the end of the tree and pruning cuts its start.
func pointKey(t time.Time, pid int) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixNano(), 0)))
	binary.BigEndian.PutUint32(k[8:], uint32(pid))
	return k
}

func unixNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixNano(), 0))
}

func fromNanos(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

func encodePoint(p Point) []byte {
	b := make([]byte, 0, 32+len(p.Comm))
	b = append(b, pointV1)
	b = binary.AppendUvarint(b, uint64(p.CloseWait))
	b = binary.AppendUvarint(b, uint64(p.NotAccepted))
	b = binary.AppendUvarint(b, uint64(p.OpenFDs))
	b = binary.AppendUvarint(b, p.FDLimit)
	age := uint64(0)
	if p.HasAge {
		age = uint64(p.OldestAge.Milliseconds()) + 1 // 0 means unknown
	}
	b = binary.AppendUvarint(b, age)
	b = append(b, byte(p.Status))
	b = binary.AppendUvarint(b, unixNanos(p.StartTime))
	b = binary.AppendUvarint(b, uint64(len(p.Comm)))
	return append(b, p.Comm...)
}

// reader reads uvarints from a record, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errCorrupt
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func decodePoint(k, v []byte) (Point, error) {
	if len(k) != 12 || len(v) == 0 || v[0] != pointV1 {
		return Point{}, fmt.Errorf("point %x: %w", k, errCorrupt)
	}
	r := &reader{b: v[1:]}
	p := Point{Time: time.Unix(0, int64(binary.BigEndian.Uint64(k))), PID: int(binary.BigEndian.Uint32(k[8:]))}
	p.CloseWait = int(r.uvarint())
	p.NotAccepted = int(r.uvarint())
	p.OpenFDs = int(r.uvarint())
	p.FDLimit = r.uvarint()
	if age := r.uvarint(); age > 0 {
		p.HasAge, p.OldestAge = true, time.Duration(age-1)*time.Millisecond
	}
	p.Status = diagnose.Status(r.byte())
	p.StartTime = fromNanos(r.uvarint())
	p.Comm = string(r.bytes(r.uvarint()))
	if r.err != nil {
		return Point{}, fmt.Errorf("point %x: %w", k, r.err)
	}
	return p, nil
}

func encodeTotal(tp TotalPoint) []byte {
	states := sockdiag.States()
	b := make([]byte, 0, 16+2*len(states))
	b = append(b, totalV1)
	b = binary.AppendUvarint(b, uint64(tp.CloseWait))
	b = binary.AppendUvarint(b, uint64(tp.Unattributed))
	b = binary.AppendUvarint(b, uint64(tp.Processes))
	b = append(b, byte(tp.Status))
	b = binary.AppendUvarint(b, uint64(tp.Entered))
	b = binary.AppendUvarint(b, uint64(tp.Left))
	b = binary.AppendUvarint(b, uint64(len(states)))
	for _, st := range states {
		b = binary.AppendUvarint(b, uint64(st))
		b = binary.AppendUvarint(b, uint64(tp.States[st.String()]))
	}
	return b
}

func decodeTotal(k, v []byte) (TotalPoint, error) {
	if len(k) != 8 || len(v) == 0 || v[0] != totalV1 {
		return TotalPoint{}, fmt.Errorf("host record %x: %w", k, errCorrupt)
	}
	r := &reader{b: v[1:]}
	tp := TotalPoint{Time: time.Unix(0, int64(binary.BigEndian.Uint64(k))), States: map[string]int{}}
	tp.CloseWait = int(r.uvarint())
	tp.Unattributed = int(r.uvarint())
	tp.Processes = int(r.uvarint())
	tp.Status = diagnose.Status(r.byte())
	tp.Entered = int(r.uvarint())
	tp.Left = int(r.uvarint())
	n := r.uvarint()
	if n > 64 {
		r.err = errCorrupt
	}
	for range n {
		st := sockdiag.State(r.uvarint())
		tp.States[st.String()] = int(r.uvarint())
	}
	if r.err != nil {
		return TotalPoint{}, fmt.Errorf("host record %x: %w", k, r.err)
	}
	return tp, nil
}
