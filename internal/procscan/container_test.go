package procscan_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/closewait/closewait/internal/procscan"
)

// Container ids and pod uids of the examples (the shapes runtimes use).
const (
	id  = "3f4b2c9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c"
	pod = "0b2f5e3c-1a2b-4c3d-8e9f-0123456789ab"
	// systemd spells the pod uid with underscores in slice names.
	podSystemd = "0b2f5e3c_1a2b_4c3d_8e9f_0123456789ab"
)

func TestParseContainer(t *testing.T) {
	for _, tt := range []struct {
		name, cgroup string
		want         procscan.Container
	}{
		// Not in a container.
		{"host root", "/", procscan.Container{}},
		{"systemd service", "/system.slice/sshd.service", procscan.Container{}},
		{"login session", "/user.slice/user-1000.slice/session-3.scope", procscan.Container{}},
		{"user service", "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope", procscan.Container{}},
		{"kubelet itself", "/system.slice/kubelet.service", procscan.Container{}},
		{"kubepods slice without container", "/kubepods.slice/kubepods-burstable.slice", procscan.Container{}},

		// Docker.
		{"docker cgroupfs driver (v1 and v2)", "/docker/" + id, procscan.Container{Runtime: "docker", ID: id}},
		{"docker systemd driver", "/system.slice/docker-" + id + ".scope", procscan.Container{Runtime: "docker", ID: id}},
		{"docker rootless", "/user.slice/user-1000.slice/user@1000.service/docker-" + id + ".scope", procscan.Container{Runtime: "docker", ID: id}},
		{"docker, process in a sub-cgroup", "/system.slice/docker-" + id + ".scope/init", procscan.Container{Runtime: "docker", ID: id}},

		// containerd (Kubernetes CRI).
		{"containerd systemd driver, burstable pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podSystemd + ".slice/cri-containerd-" + id + ".scope",
			procscan.Container{Runtime: "containerd", ID: id, PodUID: pod}},
		{"containerd systemd driver, guaranteed pod", "/kubepods.slice/kubepods-pod" + podSystemd + ".slice/cri-containerd-" + id + ".scope",
			procscan.Container{Runtime: "containerd", ID: id, PodUID: pod}},
		{"containerd cgroupfs driver, besteffort pod", "/kubepods/besteffort/pod" + pod + "/" + id,
			procscan.Container{Runtime: "containerd", ID: id, PodUID: pod}},
		{"containerd cgroupfs driver, guaranteed pod", "/kubepods/pod" + pod + "/" + id,
			procscan.Container{Runtime: "containerd", ID: id, PodUID: pod}},

		// CRI-O.
		{"cri-o systemd driver", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podSystemd + ".slice/crio-" + id + ".scope",
			procscan.Container{Runtime: "cri-o", ID: id, PodUID: pod}},
		{"cri-o systemd driver, conmon-free sub-cgroup", "/kubepods.slice/kubepods-pod" + podSystemd + ".slice/crio-" + id + ".scope/container",
			procscan.Container{Runtime: "cri-o", ID: id, PodUID: pod}},
		{"cri-o cgroupfs driver", "/kubepods/burstable/pod" + pod + "/crio-" + id,
			procscan.Container{Runtime: "cri-o", ID: id, PodUID: pod}},

		// Podman.
		{"podman rootful systemd", "/machine.slice/libpod-" + id + ".scope", procscan.Container{Runtime: "podman", ID: id}},
		{"podman 4 systemd, container sub-cgroup", "/machine.slice/libpod-" + id + ".scope/container", procscan.Container{Runtime: "podman", ID: id}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope", procscan.Container{Runtime: "podman", ID: id}},
		{"podman cgroupfs driver", "/libpod_parent/libpod-" + id, procscan.Container{Runtime: "podman", ID: id}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, procscan.ParseContainer(tt.cgroup)); diff != "" {
				t.Errorf("ParseContainer(%q) (-want +got):\n%s", tt.cgroup, diff)
			}
		})
	}
}
