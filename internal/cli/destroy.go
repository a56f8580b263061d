package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/netns"
	"github.com/closewait/closewait/internal/report"
	"github.com/closewait/closewait/internal/snapshot"
	"github.com/closewait/closewait/internal/sockdiag"
)

// DestroyCmd is `closewait destroy`: SOCK_DESTROY for chosen sockets, as
// `ss -K` does, after showing exactly which.
type DestroyCmd struct {
	HostFlags
	FilterFlags
	NetNSFlag
	ProgramFlags
	State     string `default:"close-wait" help:"States to destroy: CLOSE_WAIT unless you name others explicitly (a comma-separated list, or all)."`
	Yes       bool   `help:"Destroy the listed sockets. Without it, a dry run: list them and change nothing."`
	All       bool   `help:"Allow --yes without a filter (--pid, --port, --remote, --min-age, --netns): every selected socket of the host."`
	NoHeaders bool   `help:"Leave out the table's header."`
	JSON      bool   `short:"j" help:"Print the selection and each socket's result as one JSON object (result: would-destroy, destroyed, gone, failed, not-tried)."`
}

// Help is shown by `closewait destroy --help`.
func (c *DestroyCmd) Help() string {
	return `Examples:
  closewait destroy --pid 4121                 # dry run: the CLOSE_WAIT sockets of pid 4121
  closewait destroy --pid 4121 --yes           # destroy them
  closewait destroy --remote 10.0.0.7:5432 --min-age 10m --yes
  closewait destroy --netns blue --yes         # a namespace made with ip netns add blue

Destroying aborts the connection in the kernel but does not close the process's
file descriptor: the application still holds one dead fd per socket until it
calls close(). It is relief for the kernel and the peer, not a fix.

Needs CAP_NET_ADMIN (root) and a kernel with CONFIG_INET_DIAG_DESTROY (Linux >= 4.5).
Exit status: 0 when every listed socket was destroyed (or was gone already) or on
a dry run; 3 when any could not be destroyed or closewait could not run.`
}

// destroyOutcome is what happened to one socket.
type destroyOutcome struct {
	destroyed, gone, failed int
}

// Run lists the selected sockets and, with --yes, destroys them.
func (c *DestroyCmd) Run(g *Globals) error {
	states, err := ParseStates(c.State)
	if err != nil {
		return err
	}
	f, err := c.Filter()
	if err != nil {
		return err
	}
	if f.NetNS, err = c.namespaces(); err != nil {
		return err
	}
	filtered := len(f.PIDs) > 0 || len(f.Ports) > 0 || len(f.Remote) > 0 || f.MinAge > 0 || len(f.NetNS) > 0 || c.ProgramFlags.set()
	if c.Yes && !filtered && !c.All {
		return errors.New("destroy --yes needs a filter (--pid, --comm, --runtime, --port, --remote, --min-age, --netns), or --all to destroy every selected socket of the host")
	}
	if err := c.ProgramFlags.check(); err != nil {
		return err
	}
	if err := g.checkPIDs(c.PID); err != nil {
		return err
	}
	snap, err := g.take(snapshot.Options{States: states, NetNS: f.NetNS})
	if err != nil {
		return err
	}
	if snap.Stats.Source != "netlink" {
		return errors.New("destroy needs netlink sock_diag, which is unavailable here")
	}
	f.PIDs = c.ProgramFlags.pids(snap, g.procFS(), f.PIDs)
	socks := snap.Select(f)
	if c.JSON {
		return c.runJSON(g, snap, socks)
	}
	w := g.stdout
	what := statesText(states)
	if len(socks) == 0 {
		fmt.Fprintf(w, "No %s socket matches: nothing to destroy.\n", what)
		return nil
	}
	if c.Yes {
		fmt.Fprintf(w, "Destroying %s:\n", diagnose.Count(len(socks), what+" socket"))
	} else {
		fmt.Fprintf(w, "Would destroy %s (dry run):\n", diagnose.Count(len(socks), what+" socket"))
	}
	if err := report.NewSocketWriter(w, snap).Table(socks, !c.NoHeaders); err != nil {
		return err
	}
	fmt.Fprintln(w)
	explainDestroy(w, snap, socks)
	if !c.Yes {
		fmt.Fprintf(w, "\nDry run: nothing was destroyed. Add --yes to destroy %s.\n", diagnose.Count(len(socks), "socket"))
		return nil
	}
	fmt.Fprintln(w)
	out, err := destroySockets(snap, socks, func(s *snapshot.Socket, result string, err error) {
		line := fmt.Sprintf("%v -> %v (inode %d)", s.Local, s.Remote, s.Inode)
		if s.NotAccepted {
			line = fmt.Sprintf("%v -> %v (not accepted)", s.Local, s.Remote)
		}
		switch result {
		case resultDestroyed:
			fmt.Fprintf(w, "destroyed  %s\n", line)
		case resultGone:
			fmt.Fprintf(w, "gone       %s: closed since it was listed\n", line)
		case resultFailed:
			fmt.Fprintf(w, "failed     %s: %v\n", line, err)
		}
	})
	fmt.Fprintf(w, "\nDestroyed %d of %s", out.destroyed, diagnose.Count(len(socks), "socket"))
	if out.gone > 0 {
		fmt.Fprintf(w, "; %d were gone already", out.gone)
	}
	if out.failed > 0 {
		fmt.Fprintf(w, "; %d could not be destroyed", out.failed)
	}
	fmt.Fprintln(w, ".")
	return out.exit(err, len(socks))
}

// exit turns the outcome into the command's result: the fatal error if
// there was one, exit 3 if any socket could not be destroyed.
func (o destroyOutcome) exit(fatal error, n int) error {
	if fatal != nil {
		return fatal
	}
	if o.failed > 0 {
		return &exitError{ExitError, fmt.Errorf("destroy: %d of %d sockets could not be destroyed", o.failed, n)}
	}
	return nil
}

// destroyNote is what every run says, in one sentence, for JSON.
const destroyNote = "SOCK_DESTROY aborts the connection in the kernel (it leaves the TCP table, the peer gets a RST) but does not close file descriptors: each owner keeps a dead fd until it calls close() (writes fail with ECONNABORTED, reads return EOF), so it frees kernel TCP state, not fds; the fix is in the application, and when fd usage is the problem only closing them or a restart frees fds."

// destroyJSON is `closewait destroy --json`.
type destroyJSON struct {
	Version   int                 `json:"version"`
	DryRun    bool                `json:"dry_run"`
	Selected  int                 `json:"selected"`
	Destroyed int                 `json:"destroyed"`
	Gone      int                 `json:"gone"`
	Failed    int                 `json:"failed"`
	Note      string              `json:"note"`
	Sockets   []destroyJSONSocket `json:"sockets"`
}

type destroyJSONSocket struct {
	State       string             `json:"state"`
	Local       string             `json:"local"`
	Remote      string             `json:"remote"`
	Inode       uint64             `json:"inode"`
	NetNS       uint64             `json:"netns"`
	NotAccepted bool               `json:"not_accepted"`
	Owners      []destroyJSONOwner `json:"owners"`
	Result      string             `json:"result"` // would-destroy, destroyed, gone, failed, not-tried
	Error       string             `json:"error,omitempty"`
}

type destroyJSONOwner struct {
	PID       int    `json:"pid"`
	FD        int    `json:"fd"`
	Comm      string `json:"comm"`
	OpenFDs   int    `json:"open_fds"`
	FDLimit   uint64 `json:"fd_limit"`
	Container string `json:"container,omitempty"`
}

// runJSON prints the selection and, with --yes, each socket's result as one
// JSON object.
func (c *DestroyCmd) runJSON(g *Globals, snap *snapshot.Snapshot, socks []*snapshot.Socket) error {
	out := destroyJSON{Version: 1, DryRun: !c.Yes, Selected: len(socks), Note: destroyNote, Sockets: make([]destroyJSONSocket, len(socks))}
	index := make(map[*snapshot.Socket]int, len(socks))
	for i, s := range socks {
		index[s] = i
		js := destroyJSONSocket{State: s.State.String(), Local: s.Local.String(), Remote: s.Remote.String(),
			Inode: s.Inode, NetNS: s.NetNS, NotAccepted: s.NotAccepted, Owners: []destroyJSONOwner{}, Result: "would-destroy"}
		if c.Yes {
			js.Result = "not-tried"
		}
		for _, o := range s.Owners {
			jo := destroyJSONOwner{PID: o.PID, FD: o.FD}
			if p := snap.Processes[o.PID]; p != nil {
				jo.Comm, jo.OpenFDs, jo.FDLimit, jo.Container = p.Comm, p.OpenFDs, p.FDSoft, p.Container.ID
			}
			js.Owners = append(js.Owners, jo)
		}
		out.Sockets[i] = js
	}
	var res destroyOutcome
	var fatal error
	if c.Yes && len(socks) > 0 {
		res, fatal = destroySockets(snap, socks, func(s *snapshot.Socket, result string, err error) {
			js := &out.Sockets[index[s]]
			js.Result = result
			if err != nil {
				js.Error = err.Error()
			}
		})
		out.Destroyed, out.Gone, out.Failed = res.destroyed, res.gone, res.failed
	}
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return res.exit(fatal, len(socks))
}

func statesText(states sockdiag.StateSet) string {
	if states == sockdiag.AllStates {
		return "TCP"
	}
	var names []string
	for _, s := range sockdiag.States() {
		if states.Has(s) {
			names = append(names, s.String())
		}
	}
	return strings.Join(names, "/")
}

// explainDestroy says what destroying does and does not do, and for each
// owning process whether only a restart would give its fds back.
func explainDestroy(w io.Writer, snap *snapshot.Snapshot, socks []*snapshot.Socket) {
	fmt.Fprintln(w, "What this does: SOCK_DESTROY aborts each connection in the kernel (it leaves the TCP table, its")
	fmt.Fprintln(w, "buffers and timers go, the peer gets a RST). It does not close file descriptors: the process keeps")
	fmt.Fprintln(w, "a dead fd socket:[INODE] for each until it calls close() (its next write fails with ECONNABORTED,")
	fmt.Fprintln(w, "reads return EOF). So it frees kernel TCP state, not fds; the real fix is in the application,")
	fmt.Fprintln(w, "which must close these sockets (closewait explain PID says where to look).")

	perPID := map[int]int{}
	notAccepted := 0
	unowned := 0
	for _, s := range socks {
		if s.NotAccepted {
			notAccepted++
			continue
		}
		if len(s.Owners) == 0 {
			unowned++
		}
		for _, o := range s.Owners {
			perPID[o.PID]++
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(perPID)) {
		n := perPID[pid]
		p := snap.Processes[pid]
		if p == nil {
			fmt.Fprintf(w, "  pid %d: %s; destroying them frees none of its fds.\n", pid, diagnose.Count(n, "socket"))
			continue
		}
		fds := fmt.Sprintf("%d fds open", p.OpenFDs)
		share := 0.0
		if p.FDSoft > 0 {
			share = float64(p.OpenFDs) / float64(p.FDSoft)
			fds = fmt.Sprintf("%d/%d fds (%.0f%% of its limit)", p.OpenFDs, p.FDSoft, 100*share)
		}
		fmt.Fprintf(w, "  pid %d (%s): %s, %s: ", pid, p.Comm, diagnose.Count(n, "socket"), fds)
		if share >= 0.5 {
			fmt.Fprintln(w, "its fd usage is the problem and destroying does not lower it;")
			fmt.Fprintln(w, "    only restarting it (or a fix that closes the sockets) frees fds.")
		} else {
			fmt.Fprintln(w, "destroying frees none of its fds; if fds run short,")
			fmt.Fprintln(w, "    only the application closing them, or a restart, frees them.")
		}
	}
	if notAccepted > 0 {
		fmt.Fprintf(w, "  %s never accepted (no fd): destroying frees them, but each stays a closed entry\n", diagnose.Count(notAccepted, "socket"))
		fmt.Fprintln(w, "    in its listener's accept queue until the server accepts it.")
	}
	if unowned > 0 {
		fmt.Fprintf(w, "  %s with no owner found: their process keeps its fds as well.\n", diagnose.Count(unowned, "socket"))
	}
}

// Results of destroying one socket.
const (
	resultDestroyed = "destroyed"
	resultGone      = "gone"
	resultFailed    = "failed"
)

// destroySockets destroys socks, namespace by namespace through a netlink
// socket opened inside each, and calls report with each socket's result. It
// stops with an error when the kernel refuses for lack of privilege or
// support, which would repeat for every socket; the sockets not tried then
// count as failed and get no report.
func destroySockets(snap *snapshot.Snapshot, socks []*snapshot.Socket, report func(s *snapshot.Socket, result string, err error)) (destroyOutcome, error) {
	var out destroyOutcome
	byNS := map[uint64][]*snapshot.Socket{}
	for _, s := range socks {
		byNS[s.NetNS] = append(byNS[s.NetNS], s)
	}
	stop := func(err error) (destroyOutcome, error) {
		out.failed = len(socks) - out.destroyed - out.gone
		return out, fmt.Errorf("destroy: %w", err)
	}
	for _, ino := range slices.Sorted(maps.Keys(byNS)) {
		list := byNS[ino]
		conn, err := openIn(snap, ino)
		if err != nil {
			if errors.Is(err, netns.ErrPermission) {
				return stop(netns.ErrPermission)
			}
			for _, s := range list {
				out.failed++
				report(s, resultFailed, err)
			}
			continue
		}
		for _, s := range list {
			err := conn.Destroy(&s.Socket)
			switch {
			case err == nil:
				out.destroyed++
				report(s, resultDestroyed, nil)
			case errors.Is(err, sockdiag.ErrGone):
				out.gone++
				report(s, resultGone, nil)
			case errors.Is(err, sockdiag.ErrDestroyNotSupported):
				conn.Close()
				return stop(sockdiag.ErrDestroyNotSupported)
			case errors.Is(err, sockdiag.ErrDestroyPermission):
				conn.Close()
				return stop(sockdiag.ErrDestroyPermission)
			default:
				out.failed++
				report(s, resultFailed, err)
			}
		}
		conn.Close()
	}
	return out, nil
}

// openIn opens a sock_diag socket in the network namespace with inode ino.
func openIn(snap *snapshot.Snapshot, ino uint64) (*sockdiag.Conn, error) {
	ns, ok := snap.NamespaceOf(ino)
	if !ok || ns.Current || ino == snap.NetNS {
		c, err := sockdiag.Dial()
		if err == nil && ino != 0 && c.NetNS() != ino {
			c.Close()
			return nil, fmt.Errorf("network namespace net:[%d] not found", ino)
		}
		return c, err
	}
	c, err := snapshot.DialNetNS(ns.Path)
	if err != nil {
		return nil, err
	}
	if c.NetNS() != ino {
		c.Close()
		return nil, fmt.Errorf("network namespace net:[%d] is gone (%s now refers to net:[%d])", ino, ns.Path, c.NetNS())
	}
	return c, nil
}
