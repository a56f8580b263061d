// Package report renders a diagnosis and socket lists for people (aligned
// text) and machines (the versioned JSON contract, NDJSON, CSV).
package report

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"time"

	"github.com/closewait/closewait/internal/diagnose"
	"github.com/closewait/closewait/internal/sockdiag"
)

// Version is the JSON contract's version. Fields may be added; none are renamed.
const Version = 1

// JSONReport is the `closewait --json` document.
type JSONReport struct {
	Version   int           `json:"version"`
	Time      string        `json:"time"`
	Host      string        `json:"host"`
	Summary   JSONSummary   `json:"summary"`
	Processes []JSONProcess `json:"processes"`
	Notices   []string      `json:"notices"`
	Scan      JSONScan      `json:"scan"`
}

// JSONSummary is the host-level part of the report.
type JSONSummary struct {
	Status                string         `json:"status"`
	CloseWait             int            `json:"close_wait"`
	States                map[string]int `json:"states"`
	UnattributedCloseWait int            `json:"unattributed_close_wait"`
	UnattributedOldestAge *float64       `json:"unattributed_oldest_age_seconds,omitempty"`
	UnattributedStatus    string         `json:"unattributed_status"`
	// UnattributedGroups group the sockets with no owner by uid and
	// listening port or remote, judged by count and age.
	UnattributedGroups     []JSONUnownedGroup `json:"unattributed_groups"`
	AgeIsEstimate          bool               `json:"age_is_estimate"`
	Thresholds             JSONThresholds     `json:"thresholds"`
	ProcessesWithCloseWait int                `json:"processes_with_close_wait"`
	SampleSeconds          float64            `json:"sample_seconds,omitempty"` // time between the two snapshots of --sample
	// CloseWaitUnknown writes close_wait as null (and status "unknown"):
	// the input could not count CLOSE_WAIT sockets (ss -s).
	CloseWaitUnknown bool `json:"-"`
}

// MarshalJSON writes close_wait as null when it is unknown.
func (s JSONSummary) MarshalJSON() ([]byte, error) {
	type plain JSONSummary
	if !s.CloseWaitUnknown {
		return json.Marshal(plain(s))
	}
	return json.Marshal(struct {
		plain
		CloseWait *int `json:"close_wait"`
	}{plain: plain(s)})
}

// JSONUnownedGroup is a group of CLOSE_WAIT sockets no visible process holds.
type JSONUnownedGroup struct {
	UID       uint32         `json:"uid"`
	User      string         `json:"user"`
	Direction string         `json:"direction"`
	LocalPort uint16         `json:"local_port,omitempty"`
	Remote    string         `json:"remote,omitempty"`
	Count     int            `json:"count"`
	Oldest    *float64       `json:"oldest_age_seconds,omitempty"`
	Cause     string         `json:"cause"`
	Causes    map[string]int `json:"causes"`
	Status    string         `json:"status"`
	Reasons   []string       `json:"reasons"`
}

// JSONThresholds echoes the thresholds the report was judged by.
type JSONThresholds struct {
	CountWarning    int     `json:"count_warning"`
	CountCritical   int     `json:"count_critical"`
	FDShareWarning  float64 `json:"fd_share_warning"`
	FDShareCritical float64 `json:"fd_share_critical"`
	AgeWarning      float64 `json:"age_warning_seconds"`
	AgeCritical     float64 `json:"age_critical_seconds"`
}

// JSONProcess is one process holding CLOSE_WAIT sockets.
type JSONProcess struct {
	PID              int           `json:"pid"`
	PPID             int           `json:"ppid"`
	Comm             string        `json:"comm"`
	Cmdline          string        `json:"cmdline"`
	Exe              string        `json:"exe"`
	User             string        `json:"user"`
	UID              uint32        `json:"uid"`
	Runtime          string        `json:"runtime"`
	CloseWait        int           `json:"close_wait"`
	NotAccepted      int           `json:"not_accepted"`
	OpenFDs          int           `json:"open_fds"`
	FDLimit          uint64        `json:"fd_limit"`
	FDLimitHard      uint64        `json:"fd_limit_hard"`
	FDUsage          float64       `json:"fd_usage"`
	OldestAgeSeconds *float64      `json:"oldest_age_seconds"`
	Status           string        `json:"status"`
	Reasons          []string      `json:"reasons"`
	Container        string        `json:"container,omitempty"`
	ContainerRuntime string        `json:"container_runtime,omitempty"`
	PodUID           string        `json:"pod_uid,omitempty"`
	Cgroup           string        `json:"cgroup,omitempty"`
	Findings         []JSONFinding `json:"findings"`
	// Added by issue 4 (diagnosis): what named the runtime, thread states,
	// and with two snapshots (--sample) the growth and the fd exhaustion ETA.
	RuntimeEvidence string             `json:"runtime_evidence,omitempty"`
	Threads         *JSONThreads       `json:"threads,omitempty"`
	Growth          *JSONProcessGrowth `json:"growth,omitempty"`
	GrowthPerMin    *float64           `json:"growth_per_min,omitempty"`
	EnteredPerMin   *float64           `json:"entered_per_min,omitempty"`
	LeftPerMin      *float64           `json:"left_per_min,omitempty"`
	FDExhaustionETA *float64           `json:"fd_exhaustion_eta_seconds,omitempty"`

	// Added by issue 7: the network namespaces (inodes) of the process's
	// CLOSE_WAIT sockets, usually one (a container's own namespace).
	NetNS []uint64 `json:"netns,omitempty"`
}

// JSONThreads groups a process's threads by state and wait channel.
type JSONThreads struct {
	Total  int               `json:"total"`
	Groups []JSONThreadGroup `json:"groups"`
}

// JSONThreadGroup is a number of threads in one state, waiting in one place.
type JSONThreadGroup struct {
	State string `json:"state"`
	Wait  string `json:"wait,omitempty"`
	Count int    `json:"count"`
}

// JSONProcessGrowth compares a process's CLOSE_WAIT sockets in two snapshots.
type JSONProcessGrowth struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	Before          int     `json:"before"`
	Entered         int     `json:"entered"`
	Left            int     `json:"left"`
	Growing         bool    `json:"growing"`
}

// JSONFinding is one finding of a process.
type JSONFinding struct {
	Cause                    string   `json:"cause"`
	Direction                string   `json:"direction"`
	Remote                   string   `json:"remote,omitempty"`
	LocalPort                uint16   `json:"local_port,omitempty"`
	Count                    int      `json:"count"`
	OldestAgeSeconds         float64  `json:"oldest_age_seconds"`
	RemoteIdleTimeoutSeconds float64  `json:"remote_idle_timeout_seconds,omitempty"`
	Keepalive                int      `json:"keepalive_sockets"`
	Evidence                 []string `json:"evidence"`
	NextSteps                []string `json:"next_steps"`
	Check                    string   `json:"check,omitempty"`
	Fix                      []string `json:"fix"`
	// Peeked is set by explain --peek (see AddPeeks), outside the diagnosis.
	Peeked *JSONPeeked `json:"peeked,omitempty"`
}

// JSONScan says how the snapshot was taken.
type JSONScan struct {
	Source            string  `json:"source"`
	Owners            string  `json:"owners"`
	DurationSeconds   float64 `json:"duration_seconds"`
	Processes         int     `json:"processes"`
	ProcessesRead     int     `json:"processes_read"`
	ProcessesSkipped  int     `json:"processes_skipped"`
	ProcessesVanished int     `json:"processes_vanished"`
	ProcessesDenied   int     `json:"processes_denied"`
	FDsRead           int     `json:"fds_read"`
	OwnersReused      int     `json:"owners_reused"`
	OwnersFallback    string  `json:"owners_fallback,omitempty"`
	Changes           string  `json:"changes,omitempty"`       // watch and agent: "applied" when the CLOSE_WAIT set came from the eBPF change feed, "full" when dumped with the feed running
	ChangeEvents      int     `json:"change_events,omitempty"` // changes the feed gave this snapshot
	Partial           bool    `json:"partial"`
}

// Seconds rounds a duration to milliseconds, as seconds.
func Seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// BuildJSON converts a report into the JSON contract.
func BuildJSON(r *diagnose.Report) *JSONReport {
	snap := r.Snapshot
	out := &JSONReport{
		Version:   Version,
		Time:      snap.Time.UTC().Format(time.RFC3339),
		Host:      snap.Host,
		Processes: []JSONProcess{},
		Notices:   append([]string{}, snap.Notices...),
	}
	states := map[string]int{}
	for _, st := range sockdiag.States() {
		states[st.String()] = snap.States[st]
	}
	th := r.Thresholds
	out.Summary = JSONSummary{
		Status:                 r.Status.String(),
		CloseWait:              r.CloseWait,
		States:                 states,
		UnattributedCloseWait:  r.Unattributed.Count,
		UnattributedStatus:     r.Unattributed.Status.String(),
		AgeIsEstimate:          true,
		ProcessesWithCloseWait: len(r.Processes),
		SampleSeconds:          Seconds(r.Sample),
		CloseWaitUnknown:       r.CloseWaitUnknown,
		Thresholds: JSONThresholds{
			CountWarning: th.CountWarning, CountCritical: th.CountCritical,
			FDShareWarning: th.FDShareWarning, FDShareCritical: th.FDShareCritical,
			AgeWarning: th.AgeWarning.Seconds(), AgeCritical: th.AgeCritical.Seconds(),
		},
	}
	if r.CloseWaitUnknown {
		out.Summary.Status = "unknown"
	}
	out.Summary.UnattributedGroups = []JSONUnownedGroup{}
	for _, g := range r.Unattributed.Groups {
		jg := JSONUnownedGroup{UID: g.UID, User: g.User, Direction: "outbound", Remote: g.Remote, Count: g.Count,
			Cause: g.Cause(), Causes: g.Causes, Status: g.Status.String(), Reasons: append([]string{}, g.Reasons...)}
		if g.Inbound {
			jg.Direction, jg.LocalPort = "inbound", g.LocalPort
		}
		if g.HasAge {
			v := Seconds(g.Oldest)
			jg.Oldest = &v
		}
		out.Summary.UnattributedGroups = append(out.Summary.UnattributedGroups, jg)
	}
	if r.Unattributed.HasAge {
		v := Seconds(r.Unattributed.Oldest)
		out.Summary.UnattributedOldestAge = &v
	}
	for _, p := range r.Processes {
		out.Processes = append(out.Processes, BuildJSONProcess(p))
	}
	st := snap.Stats
	out.Scan = JSONScan{
		Source: st.Source, Owners: st.Owners, DurationSeconds: Seconds(st.Duration),
		Processes: st.Scan.Processes, ProcessesRead: st.Scan.Visited, ProcessesSkipped: st.Scan.Skipped,
		ProcessesVanished: st.Scan.Vanished, ProcessesDenied: st.Scan.Denied, FDsRead: st.Scan.FDs,
		OwnersReused: st.Reused, Partial: snap.Partial,
		Changes: st.Changes, ChangeEvents: st.ChangeEvents,
	}
	if st.Scan.Fallback != nil {
		out.Scan.OwnersFallback = st.Scan.Fallback.Error()
	}
	return out
}

// BuildJSONProcess converts one process's judgement into the JSON contract.
func BuildJSONProcess(p *diagnose.ProcessReport) JSONProcess {
	jp := JSONProcess{
		PID: p.PID, Runtime: p.Runtime, CloseWait: p.CloseWait, NotAccepted: p.NotAccepted,
		Status: p.Status.String(), Reasons: append([]string{}, p.Reasons...), Findings: []JSONFinding{},
		FDUsage: math.Round(p.FDShare()*10000) / 10000,
	}
	if pr := p.Process; pr != nil {
		jp.PPID, jp.Comm, jp.Cmdline, jp.Exe = pr.PPID, pr.Comm, pr.Cmdline, pr.Exe
		jp.User, jp.UID, jp.OpenFDs = pr.User, pr.UID, pr.OpenFDs
		jp.FDLimit, jp.FDLimitHard = pr.FDSoft, pr.FDHard
		jp.Container, jp.ContainerRuntime, jp.PodUID, jp.Cgroup = pr.Container.ID, pr.Container.Runtime, pr.Container.PodUID, pr.Cgroup
	}
	if p.HasAge {
		v := Seconds(p.Oldest)
		jp.OldestAgeSeconds = &v
	}
	for _, s := range p.Sockets {
		if s.NetNS != 0 && !slices.Contains(jp.NetNS, s.NetNS) {
			jp.NetNS = append(jp.NetNS, s.NetNS)
		}
	}
	for _, f := range p.Findings {
		jp.Findings = append(jp.Findings, JSONFinding{
			Cause: f.Cause, Direction: f.Direction, Remote: f.Remote, LocalPort: f.LocalPort,
			Count: f.Count, OldestAgeSeconds: f.Oldest, RemoteIdleTimeoutSeconds: f.RemoteIdleTimeout,
			Keepalive: f.Keepalive, Evidence: nonNil(f.Evidence), NextSteps: nonNil(f.NextSteps),
			Check: f.Check, Fix: nonNil(f.Fix),
		})
	}
	jp.RuntimeEvidence = p.RuntimeEvidence
	if t := p.Threads; t != nil {
		jt := &JSONThreads{Total: t.Total, Groups: []JSONThreadGroup{}}
		for _, g := range t.Groups {
			jt.Groups = append(jt.Groups, JSONThreadGroup{State: g.State, Wait: g.Wait, Count: g.Count})
		}
		jp.Threads = jt
	}
	if g := p.Growth; g != nil {
		jp.Growth = &JSONProcessGrowth{IntervalSeconds: Seconds(g.Interval), Before: g.Before, Entered: g.Entered, Left: g.Left, Growing: g.Growing()}
		round := func(v float64) *float64 { v = math.Round(v*100) / 100; return &v }
		jp.GrowthPerMin, jp.EnteredPerMin, jp.LeftPerMin = round(g.NetPerMin), round(g.EnteredPerMin), round(g.LeftPerMin)
		if g.HasETA {
			jp.FDExhaustionETA = round(g.ETA.Seconds())
		}
	}
	return jp
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *diagnose.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(BuildJSON(r))
}
