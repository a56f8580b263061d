# The closewait agent image: Prometheus metrics, JSON API and dashboard on
# port 10717 (closewait agent's default port).
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t closewait .
#
# To see the host's sockets and name their processes the container needs the
# host's pid and network namespaces and two capabilities (read-only access to
# /proc/PID/fd of other users' processes):
#
#   docker run -d --name closewait --pid=host --network=host \
#     --cap-drop=ALL --cap-add=SYS_PTRACE --cap-add=DAC_READ_SEARCH \
#     --read-only closewait
#
# - --pid=host (Kubernetes: hostPID: true): the owners are found in /proc/PID/fd.
# - --network=host (hostNetwork: true): the host's TCP sockets. Sockets of
#   other network namespaces (pods) are read only with CAP_SYS_ADMIN.
# - --owners ebpf (faster on very large hosts) also needs CAP_BPF and
#   CAP_PERFMON; without them the agent uses /proc (the default, auto).
# - With --network=host the agent listens on 0.0.0.0:10717 of the host:
#   firewall it, or run it on 127.0.0.1 as above.
# deploy/kubernetes/ has a DaemonSet that runs this image.

# The builder: the same static build as `make build` (cmd/closewait/package_test.go
# runs this RUN line and checks the binary is static and stamped).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/closewait/closewait/internal/cli.Version=${VERSION}" -o /out/closewait ./cmd/closewait

# The image: the static binary alone (no shell, no libc). It runs as root so
# that the capabilities above apply; it writes nothing (no --history).
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/closewait /usr/bin/closewait
EXPOSE 10717
# `docker run IMAGE` runs closewait agent --listen 0.0.0.0:10717; arguments
# replace the CMD (e.g. `docker run IMAGE --json` for one report, or the
# DaemonSet's args in deploy/kubernetes).
ENTRYPOINT ["/usr/bin/closewait"]
CMD ["agent", "--listen", "0.0.0.0:10717"]
