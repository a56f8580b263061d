#!/usr/bin/env bash
# creation-ab.sh: the cost of a traced socket creation (issue 15), two or
# more builds of internal/sockorigin side by side.
#
#   go test -c -o /tmp/before.test ./internal/sockorigin   # at the old commit
#   go test -c -o /tmp/after.test ./internal/sockorigin    # at the new one
#   bench/creation-ab.sh ROUNDS /tmp/before.test /tmp/after.test
#
# Each round runs BenchmarkCreationAlternating (6000 ops, 3 runs) of every
# binary in turn, so that the host's load, which drifts over seconds,
# weighs on all alike; then it prints, per binary, every run's
# extra-ns/creation (the kernel time a traced creation adds, its close
# included) and their median. Needs root (eBPF, BPF statistics).
set -euo pipefail

if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 ROUNDS TEST_BINARY..." >&2
	exit 2
fi
rounds=$1
shift
for b in "$@"; do
	[[ -x $b ]] || { echo "$0: $b: not an executable test binary" >&2; exit 2; }
done
declare -A runs
for ((r = 0; r < rounds; r++)); do
	for b in "$@"; do
		out=$("$b" -test.run '^$' -test.bench CreationAlternating -test.benchtime 6000x -test.count 3 2>&1) || {
			echo "$0: $b failed:" >&2
			echo "$out" | tail -5 >&2
			exit 1
		}
		runs[$b]+=" $(grep -o '[0-9.]* extra-ns/creation' <<<"$out" | awk '{printf "%d ", $1}')"
	done
done
for b in "$@"; do
	# shellcheck disable=SC2086
	median=$(printf '%s\n' ${runs[$b]} | sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}')
	echo "$b:${runs[$b]} (median $median)"
done
