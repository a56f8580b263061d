package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/snapshot"
)

// SocketWriter writes socket lists. It encodes by hand into a reused buffer
// (100k sockets must not cost 100k allocations) and caches each owner's
// encoded command name.
type SocketWriter struct {
	snap  *snapshot.Snapshot
	w     *bufio.Writer
	buf   []byte
	comms map[int][]byte
}

// NewSocketWriter returns a writer of the snapshot's sockets to w.
func NewSocketWriter(w io.Writer, snap *snapshot.Snapshot) *SocketWriter {
	return &SocketWriter{snap: snap, w: bufio.NewWriterSize(w, 256<<10), comms: map[int][]byte{}}
}

func (sw *SocketWriter) comm(pid int) []byte {
	if b, ok := sw.comms[pid]; ok {
		return b
	}
	name := ""
	if p := sw.snap.Processes[pid]; p != nil {
		name = p.Comm
	}
	b, _ := json.Marshal(name)
	sw.comms[pid] = b
	return b
}

// appendJSON appends one socket object in the `closewait sockets --json` contract.
func (sw *SocketWriter) appendJSON(b []byte, s *snapshot.Socket) []byte {
	b = append(b, `{"state":"`...)
	b = append(b, s.State.String()...)
	b = append(b, `","local":"`...)
	b = s.Local.AppendTo(b)
	b = append(b, `","remote":"`...)
	b = s.Remote.AppendTo(b)
	b = append(b, `","recv_q":`...)
	b = strconv.AppendUint(b, uint64(s.RecvQ), 10)
	b = append(b, `,"send_q":`...)
	b = strconv.AppendUint(b, uint64(s.SendQ), 10)
	b = append(b, `,"inode":`...)
	b = strconv.AppendUint(b, s.Inode, 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(s.UID), 10)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, s.NetNS, 10)
	b = append(b, `,"age_seconds":`...)
	if age, ok := s.Age(); ok {
		b = strconv.AppendFloat(b, Seconds(age), 'f', -1, 64)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"direction":"`...)
	if s.Inbound() {
		b = append(b, "inbound"...)
	} else {
		b = append(b, "outbound"...)
	}
	b = append(b, `","not_accepted":`...)
	b = strconv.AppendBool(b, s.NotAccepted)
	b = append(b, `,"keepalive":`...)
	b = strconv.AppendBool(b, s.KeepaliveSet())
	b = append(b, `,"owners":[`...)
	for i, o := range s.Owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"pid":`...)
		b = strconv.AppendInt(b, int64(o.PID), 10)
		b = append(b, `,"fd":`...)
		b = strconv.AppendInt(b, int64(o.FD), 10)
		b = append(b, `,"comm":`...)
		b = append(b, sw.comm(o.PID)...)
		if p := sw.snap.Processes[o.PID]; p != nil && p.Container.ID != "" {
			b = append(b, `,"container":`...)
			b = strconv.AppendQuote(b, p.Container.ID)
			b = append(b, `,"container_runtime":`...)
			b = strconv.AppendQuote(b, p.Container.Runtime)
			if p.Container.PodUID != "" {
				b = append(b, `,"pod_uid":`...)
				b = strconv.AppendQuote(b, p.Container.PodUID)
			}
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	return b
}

// JSON writes the sockets as one JSON array.
func (sw *SocketWriter) JSON(socks []*snapshot.Socket) error {
	sw.w.WriteString("[")
	for i, s := range socks {
		sw.buf = sw.buf[:0]
		if i > 0 {
			sw.buf = append(sw.buf, ",\n"...)
		} else {
			sw.buf = append(sw.buf, '\n')
		}
		sw.buf = sw.appendJSON(sw.buf, s)
		sw.w.Write(sw.buf)
	}
	sw.w.WriteString("\n]\n")
	return sw.w.Flush()
}

// NDJSON writes one JSON object per line.
func (sw *SocketWriter) NDJSON(socks []*snapshot.Socket) error {
	for _, s := range socks {
		sw.buf = sw.appendJSON(sw.buf[:0], s)
		sw.buf = append(sw.buf, '\n')
		sw.w.Write(sw.buf)
	}
	return sw.w.Flush()
}

// CSV writes a header and one row per socket; owners are "comm/pid/fd"
// joined by spaces.
func (sw *SocketWriter) CSV(socks []*snapshot.Socket) error {
	cw := csv.NewWriter(sw.w)
	cw.Write([]string{"state", "local", "remote", "recv_q", "send_q", "inode", "uid", "netns", "age_seconds", "direction", "not_accepted", "keepalive", "owners"})
	for _, s := range socks {
		age := ""
		if a, ok := s.Age(); ok {
			age = strconv.FormatFloat(Seconds(a), 'f', -1, 64)
		}
		dir := "outbound"
		if s.Inbound() {
			dir = "inbound"
		}
		cw.Write([]string{s.State.String(), s.Local.String(), s.Remote.String(),
			strconv.FormatUint(uint64(s.RecvQ), 10), strconv.FormatUint(uint64(s.SendQ), 10),
			strconv.FormatUint(s.Inode, 10), strconv.FormatUint(uint64(s.UID), 10), strconv.FormatUint(s.NetNS, 10),
			age, dir, strconv.FormatBool(s.NotAccepted), strconv.FormatBool(s.KeepaliveSet()), sw.ownerText(s, "%s/%d/%d", " ")})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return sw.w.Flush()
}

func (sw *SocketWriter) ownerText(s *snapshot.Socket, format, sep string) string {
	out := ""
	for i, o := range s.Owners {
		if i > 0 {
			out += sep
		}
		name := ""
		if p := sw.snap.Processes[o.PID]; p != nil {
			name = p.Comm
		}
		out += fmt.Sprintf(format, name, o.PID, o.FD)
	}
	return out
}

// Table writes an aligned table in the shape of ss(8), with owners as
// users:(("comm",pid=N,fd=M)) and the age estimate.
func (sw *SocketWriter) Table(socks []*snapshot.Socket, header bool) error {
	lw, rw := 21, 21
	for _, s := range socks {
		lw = max(lw, len(s.Local.String()))
		rw = max(rw, len(s.Remote.String()))
	}
	if header {
		fmt.Fprintf(sw.w, "%-11s %7s %7s %-*s %-*s %8s  %s\n", "STATE", "RECV-Q", "SEND-Q", lw, "LOCAL", rw, "REMOTE", "AGE~", "PROCESS")
	}
	for _, s := range socks {
		age := "-"
		if a, ok := s.Age(); ok {
			age = diagnose.FormatAge(a)
		}
		owners := "-"
		if len(s.Owners) > 0 {
			owners = "users:(" + sw.ownerText(s, "(%q,pid=%d,fd=%d)", ",") + ")"
			if s.NotAccepted {
				owners += " not-accepted"
			}
		}
		owners += sw.where(s)
		fmt.Fprintf(sw.w, "%-11s %7d %7d %-*s %-*s %8s  %s\n", s.State, s.RecvQ, s.SendQ, lw, s.Local, rw, s.Remote, age, owners)
	}
	if header && len(socks) > 0 {
		fmt.Fprintln(sw.w, "AGE~ is estimated from tcp_info last_ack_recv: the time since the peer's FIN for an idle socket.")
	}
	return sw.w.Flush()
}

// where labels a socket that lives outside closewait's own network namespace
// or whose owner runs in a container: " netns:[INODE](name) container=ID12
// pod=UID". It is empty for the host's own sockets.
func (sw *SocketWriter) where(s *snapshot.Socket) string {
	out := ""
	if s.NetNS != 0 && s.NetNS != sw.snap.NetNS {
		out += " netns:[" + strconv.FormatUint(s.NetNS, 10) + "]"
		if ns, ok := sw.snap.NamespaceOf(s.NetNS); ok && ns.Name != "" {
			out += "(" + ns.Name + ")"
		}
	}
	for _, o := range s.Owners {
		p := sw.snap.Processes[o.PID]
		if p == nil || p.Container.ID == "" {
			continue
		}
		id := p.Container.ID
		if len(id) > 12 {
			id = id[:12]
		}
		out += " container=" + id
		if p.Container.PodUID != "" {
			out += " pod=" + p.Container.PodUID
		}
		break
	}
	return out
}
