#!/usr/bin/env bash
# agent-soak.sh: run `closewait agent` for a while and sample its RSS and CPU.
#
#   bench/agent-soak.sh BINARY DURATION_SECONDS [SAMPLE_SECONDS] [-- AGENT_ARGS...]
#
# Starts `BINARY agent --listen 127.0.0.1:0 --interval 15s AGENT_ARGS...`
# (AGENT_ARGS come after --, e.g. `-- --feed ebpf`; a repeated flag overrides
# the defaults if the agent takes the last one), then every SAMPLE_SECONDS
# (60) prints: elapsed seconds, RSS MB (VmRSS), cumulative CPU seconds
# (utime + stime over CLK_TCK) and CPU % of one core over the last sample.
# At the end: mean CPU % after the first 2 minutes (warm-up), RSS at 5 min,
# at the end and the max. The agent is stopped by pid (SIGTERM, SIGKILL after
# 5 s) at the end, on Ctrl-C/SIGTERM, or if the script fails.
#
# Environment: WARMUP (120 seconds excluded from the mean CPU), AGENT_LOG
# (the agent's stdout/stderr; a temporary file by default, kept at the end).
# The fixture is separate: start bench/cwhost first (see bench/README.md).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
	echo "usage: $0 BINARY DURATION_SECONDS [SAMPLE_SECONDS] [-- AGENT_ARGS...]" >&2
	exit 2
}

[[ $# -ge 2 ]] || usage
BIN=$1 DURATION=$2
shift 2
SAMPLE=60
if [[ $# -gt 0 && $1 != -- ]]; then
	SAMPLE=$1
	shift
fi
bench_extra "$@"
WARMUP=${WARMUP:-120}

isint() { [[ $1 =~ ^[0-9]+$ ]]; }
isint "$DURATION" && [[ $DURATION -gt 0 ]] || { echo "DURATION_SECONDS: want a positive integer, got '$DURATION'" >&2; exit 2; }
isint "$SAMPLE" && [[ $SAMPLE -gt 0 ]] || { echo "SAMPLE_SECONDS: want a positive integer, got '$SAMPLE'" >&2; exit 2; }
isint "$WARMUP" || { echo "WARMUP: want an integer, got '$WARMUP'" >&2; exit 2; }
[[ -x $BIN ]] || { echo "$BIN: not an executable file" >&2; exit 2; }

TCK=$(getconf CLK_TCK)
AGENT_LOG=${AGENT_LOG:-$(mktemp /tmp/agent-soak.XXXXXX.log)}
PID=""
SLEEP_PID=""

# stop_agent: SIGTERM the agent by pid, SIGKILL after 5 s; idempotent.
stop_agent() {
	if [[ -n $SLEEP_PID ]]; then
		kill "$SLEEP_PID" 2>/dev/null || true
		SLEEP_PID=""
	fi
	[[ -n $PID ]] || return 0
	local p=$PID
	PID=""
	stop_pid "$p"
	echo "# agent $p stopped (exit status $STOP_RC); its output: $AGENT_LOG"
}
trap stop_agent EXIT
trap 'echo "# interrupted" >&2; exit 130' INT
trap 'echo "# terminated" >&2; exit 143' TERM HUP

"$BIN" agent --listen 127.0.0.1:0 --interval 15s "${EXTRA[@]}" >"$AGENT_LOG" 2>&1 &
PID=$!
START=$EPOCHREALTIME
echo "# agent pid $PID: $BIN agent --listen 127.0.0.1:0 --interval 15s ${EXTRA[*]}"
echo "# duration ${DURATION}s, sample every ${SAMPLE}s, warm-up ${WARMUP}s, CLK_TCK $TCK, $(nproc) CPUs, log $AGENT_LOG"

# rss_kb: VmRSS of the agent in kB; cpu_ticks: utime + stime in clock ticks.
# Both fail once the process is gone.
rss_kb() { proc_kb "$PID" VmRSS; }
cpu_ticks() { proc_ticks "$PID"; }
# elapsed: seconds since START, 0.1 s resolution (bash 5 EPOCHREALTIME).
elapsed() { awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

sleep 0.5
kill -0 "$PID" 2>/dev/null || { echo "agent exited at once:" >&2; cat "$AGENT_LOG" >&2; exit 1; }
url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$AGENT_LOG" | head -n 1)
echo "# agent listening on ${url:-?}"

# Samples: elapsed, rss_kb, ticks.
declare -a S_T=() S_RSS=() S_TICKS=()
T0=$(elapsed)
TICKS0=$(cpu_ticks)
S_T+=("$T0") S_RSS+=("$(rss_kb)") S_TICKS+=("$TICKS0")
printf '%8s %8s %9s %6s\n' elapsed_s rss_mb cpu_s cpu_%
printf '%8.0f %8.1f %9.2f %6s\n' "$T0" "$(awk -v k="${S_RSS[0]}" 'BEGIN { print k / 1024 }')" \
	"$(awk -v t="$TICKS0" -v h="$TCK" 'BEGIN { print t / h }')" "-"

next=$SAMPLE
while :; do
	# Sleep until the next sample (or the end), measured from START.
	target=$((next < DURATION ? next : DURATION))
	wait_s=$(awk -v t="$target" -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { d = t - (b - a); print (d > 0 ? d : 0) }')
	# In the background: a trapped signal interrupts `wait` at once, while
	# bash would run the trap only after a foreground sleep ends.
	sleep "$wait_s" &
	SLEEP_PID=$!
	wait "$SLEEP_PID"
	SLEEP_PID=""
	if ! kill -0 "$PID" 2>/dev/null; then
		echo "# agent $PID exited early; its output:" >&2
		tail -n 20 "$AGENT_LOG" >&2
		exit 1
	fi
	t=$(elapsed)
	rss=$(rss_kb) && ticks=$(cpu_ticks) || { echo "# agent $PID vanished while sampling" >&2; exit 1; }
	i=${#S_T[@]}
	pt=${S_T[i - 1]} pticks=${S_TICKS[i - 1]}
	S_T+=("$t") S_RSS+=("$rss") S_TICKS+=("$ticks")
	awk -v t="$t" -v k="$rss" -v c="$ticks" -v h="$TCK" -v pt="$pt" -v pc="$pticks" 'BEGIN {
		dt = t - pt
		printf "%8.0f %8.1f %9.2f %6.1f\n", t, k / 1024, c / h, (dt > 0 ? 100 * (c - pc) / h / dt : 0)
	}'
	((target < DURATION)) || break
	next=$((next + SAMPLE))
done

# Summary. Mean CPU after warm-up: from the first sample at or after WARMUP
# to the last one (if the run is shorter than that, over the whole run).
n=${#S_T[@]}
w=0
for ((i = 0; i < n; i++)); do
	if awk -v t="${S_T[i]}" -v w="$WARMUP" 'BEGIN { exit !(t >= w) }'; then
		w=$i
		break
	fi
done
warm_note=""
if ((w == 0 || w == n - 1)); then
	warm_note=" (run too short to skip a ${WARMUP}s warm-up: whole run)"
	w=0
fi
# RSS at 5 min: the sample nearest to 300 s (n/a if the run ends before 270 s).
summary=$(
	for ((i = 0; i < n; i++)); do echo "${S_T[i]} ${S_RSS[i]} ${S_TICKS[i]}"; done |
		awk -v w="$w" -v h="$TCK" '
		{ t[NR-1] = $1; r[NR-1] = $2; c[NR-1] = $3; if ($2 > max) max = $2 }
		END {
			n = NR
			dt = t[n-1] - t[w]
			mean = dt > 0 ? 100 * (c[n-1] - c[w]) / h / dt : 0
			best = -1
			for (i = 0; i < n; i++) {
				d = t[i] - 300; if (d < 0) d = -d
				if (best < 0 || d < bestd) { best = i; bestd = d }
			}
			r5 = (t[n-1] >= 270) ? sprintf("%.1f MB (at %.0fs)", r[best] / 1024, t[best]) : "n/a (run shorter than 5 min)"
			printf "mean CPU %.2f%% of one core from %.0fs to %.0fs\n", mean, t[w], t[n-1]
			printf "RSS at 5 min %s, at the end %.1f MB, max %.1f MB\n", r5, r[n-1] / 1024, max / 1024
			printf "CPU total %.2f s over %.0f s\n", c[n-1] / h, t[n-1]
		}'
)
echo "# summary$warm_note"
echo "$summary" | sed 's/^/# /'
stop_agent
