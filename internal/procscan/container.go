package procscan

import (
	"regexp"
	"strings"
)

// Container names the container a process runs in, as its cgroup path shows it.
type Container struct {
	Runtime string // "docker", "containerd", "cri-o", "podman", or "" when none was recognised
	ID      string // the container id (64 hex digits), or ""
	PodUID  string // the Kubernetes pod uid, or ""
}

var (
	reScopeID = regexp.MustCompile(`(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(\.scope|/|$)`) // .scope: systemd driver; bare: cgroupfs driver (cri-o, podman)
	rePathID  = regexp.MustCompile(`/(docker|libpod|crio|containerd)?/?([0-9a-f]{64})(/|$)`)
	rePodUID  = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
)

var scopeRuntime = map[string]string{
	"docker":         "docker",
	"cri-containerd": "containerd",
	"crio":           "cri-o",
	"libpod":         "podman",
	"containerd":     "containerd",
}

// ParseContainer recognises the container id and pod uid in a cgroup path, for
// the layouts of docker, containerd (with Kubernetes), cri-o and podman, with
// the systemd or cgroupfs cgroup drivers.
func ParseContainer(cgroup string) Container {
	var c Container
	if m := rePodUID.FindStringSubmatch(cgroup); m != nil {
		c.PodUID = strings.ReplaceAll(m[1], "_", "-")
	}
	if m := reScopeID.FindStringSubmatch(cgroup); m != nil {
		c.Runtime, c.ID = scopeRuntime[m[1]], m[2]
		return c
	}
	if m := rePathID.FindStringSubmatch(cgroup); m != nil {
		c.ID = m[2]
		switch {
		case m[1] != "":
			c.Runtime = scopeRuntime[m[1]]
		case strings.Contains(cgroup, "/docker/"):
			c.Runtime = "docker"
		case c.PodUID != "":
			c.Runtime = "containerd"
		}
	}
	return c
}
