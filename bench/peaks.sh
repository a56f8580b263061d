#!/usr/bin/env bash
# peaks.sh: the peak memory of `closewait agent` (or watch) over incremental
# scans and over a full check, and its CPU a scan.
#
#   bench/peaks.sh BINARY agent|watch [-- EXTRA_ARGS...]
#
# Starts `BINARY agent --listen 127.0.0.1:0 --interval 2s EXTRA_ARGS...`
# (or `BINARY watch --json --interval 1s EXTRA_ARGS...`, output discarded),
# e.g. `-- --netns cw100` to read only a fixture's namespace. Then:
#   - after WARMUP (10 s: the first scan, a full one, is over) the peak RSS
#     is reset (echo 5 > /proc/PID/clear_refs);
#   - INCR seconds later (60) it reads VmRSS, VmHWM (the peak over
#     incremental scans) and the CPU spent (utime+stime) in that window,
#     and resets the peak again;
#   - FULL seconds later (32) it reads VmHWM again: with the change feed the
#     agent's full check is every 40th scan, 80 s at the 2 s interval, so
#     that window holds it.
# It prints one line and stops the process by its pid (SIGTERM, SIGKILL
# after 5 s), also on failure or Ctrl-C. Needs root (clear_refs, and the
# agent's eBPF). The fixture is separate: start bench/cwhost first (see
# bench/README.md).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
	echo "usage: $0 BINARY agent|watch [-- EXTRA_ARGS...]" >&2
	exit 2
}
[[ $# -ge 2 ]] || usage
BIN=$1 MODE=$2
shift 2
bench_extra "$@"
WARMUP=${WARMUP:-10} INCR=${INCR:-60} FULL=${FULL:-32}
for v in WARMUP INCR FULL; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "$v: want a positive integer, got '${!v}'" >&2; exit 2; }
done
[[ -x $BIN ]] || { echo "$BIN: not an executable file" >&2; exit 2; }
case $MODE in
agent) CMD=("$BIN" agent --listen 127.0.0.1:0 --interval 2s "${EXTRA[@]}") ;;
watch) CMD=("$BIN" watch --json --interval 1s "${EXTRA[@]}") ;;
*) usage ;;
esac

LOG=$(mktemp /tmp/peaks.XXXXXX.log)
PID=""
stop() {
	[[ -n $PID ]] || return 0
	local p=$PID
	PID=""
	stop_pid "$p"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [[ $MODE == watch ]]; then
	"${CMD[@]}" >/dev/null 2>"$LOG" &
else
	"${CMD[@]}" >"$LOG" 2>&1 &
fi
PID=$!
echo "# pid $PID: ${CMD[*]}; warm-up ${WARMUP}s, incremental window ${INCR}s, full-check window ${FULL}s; log $LOG"

kb() { proc_kb "$PID" "$1"; }
ticks() { proc_ticks "$PID"; }
alive() { kill -0 "$PID" 2>/dev/null || { echo "$MODE exited early; its output:" >&2; cat "$LOG" >&2; exit 1; }; }

sleep "$WARMUP"
alive
echo 5 >"/proc/$PID/clear_refs"
t0=$(ticks)
sleep "$INCR"
alive
incr=$(kb VmHWM) rss=$(kb VmRSS) t1=$(ticks)
echo 5 >"/proc/$PID/clear_refs"
sleep "$FULL"
alive
full=$(kb VmHWM)
awk -v m="$MODE" -v rss="$rss" -v incr="$incr" -v full="$full" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v w="$INCR" 'BEGIN {
	printf "%s: RSS %.0f MB; peak over incremental scans %.0f MB; peak over a window with a full check %.0f MB; CPU %.2f s over %d s (%.1f%% of a core)\n",
		m, rss / 1024, incr / 1024, full / 1024, t / hz, w, 100 * t / hz / w }'
