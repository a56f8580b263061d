#!/usr/bin/env bash
# compare.sh: build a busy host on loopback (bench/cwhost) at each size and
# time closewait beside ss, lsof and netstat in one run. Prints a markdown
# table per size (median wall seconds, peak RSS) and closewait's ratios.
#
#   bench/compare.sh                    # sizes 10000 100000 300000
#   bench/compare.sh 10000 100000       # or SIZES="10000 100000" bench/compare.sh
#   bench/compare.sh existing           # no fixture: time the tools on the host as it is
#
# Environment (defaults in brackets):
#   RUNS [3]            timed runs per command; the median is reported
#   RUNS_BIG [RUNS]     timed runs at sizes above 100000
#   CMD_TIMEOUT [180]   seconds before a single run is killed (reported as timeout)
#   SLOW [60]           a command whose first run takes longer is not repeated,
#                       and is skipped at the larger sizes
#   SETUP_TIMEOUT [1200] seconds cwhost may take to build the host
#   CWHOST_FLAGS []     extra cwhost flags, e.g. "-linger2 2" (shorter FIN-WAIT-2 drain)
#   CLOSEWAIT [/tmp/closewait]  where `go build ./cmd/closewait` puts the binary
#   CLOSEWAIT_BIN []    use this prebuilt closewait instead of building
#   RESULTS []          also append the tables to this file
#   ONLY []             time only the commands matching this bash regex, e.g. '^(ss -Htan |closewait)'
#   WARMUP [1]          list /proc/*/fd once before timing (0: the first owner
#                       scan pays for the cold procfs dentries)
# Needs root (ss -p, lsof and netstat -p see other processes' fds only as root).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 3
SIZES=${*:-${SIZES:-10000 100000 300000}}
RUNS=${RUNS:-3}
RUNS_BIG=${RUNS_BIG:-$RUNS}
CMD_TIMEOUT=${CMD_TIMEOUT:-180}
SLOW=${SLOW:-60}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-1200}
CWHOST_FLAGS=${CWHOST_FLAGS:-}
CLOSEWAIT=${CLOSEWAIT:-/tmp/closewait}
RESULTS=${RESULTS:-}
WARMUP=${WARMUP:-1}

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
out() { printf '%s\n' "$*"; [[ -n $RESULTS ]] && printf '%s\n' "$*" >>"$RESULTS"; return 0; }

WORK=$(mktemp -d /tmp/cwbench.XXXXXX) || exit 3
HOST_PID=""
HOLDERS=""

# --- tools -------------------------------------------------------------------
need_pkg() { # binary debian-package
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 for $1"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } ||
		log "could not install $2"
}
[[ -x /usr/bin/time ]] || need_pkg /usr/bin/time time
need_pkg ss iproute2
need_pkg lsof lsof
need_pkg netstat net-tools
[[ -x /usr/bin/time ]] || { log "GNU time (/usr/bin/time) is required"; exit 3; }
((EUID == 0)) || log "warning: not root: ss -p, lsof and netstat -p (and closewait) see only your own processes' fds"

log "building cwhost"
go build -o "$WORK/cwhost" ./bench/cwhost || { log "cwhost build failed"; exit 3; }

CW=""
if [[ -n ${CLOSEWAIT_BIN:-} ]]; then
	CW=$CLOSEWAIT_BIN
elif ! ls cmd/closewait/*.go >/dev/null 2>&1; then
	log "closewait: ./cmd/closewait does not exist yet; measuring ss, lsof and netstat only"
elif go build -o "$CLOSEWAIT" ./cmd/closewait 2>"$WORK/closewait-build.log"; then
	CW=$CLOSEWAIT
else
	log "closewait: go build ./cmd/closewait failed; measuring ss, lsof and netstat only:"
	tail -n 20 "$WORK/closewait-build.log" >&2
fi
OWNERS_EBPF=""
if [[ -n $CW ]] && "$CW" sockets --help 2>&1 | grep -q -- '--owners'; then
	OWNERS_EBPF=1
fi

# name|shell command (stdout goes to /dev/null when timed)
CMDS=(
	"ss -Htan state close-wait"
	"ss -Htani state close-wait"
	"ss -Htanp state close-wait"
	"lsof -nP -iTCP -sTCP:CLOSE_WAIT"
	"netstat -antp | grep CLOSE_WAIT"
)
if [[ -n $CW ]]; then
	CMDS+=("closewait sockets --json" "closewait --json")
	[[ -n $OWNERS_EBPF ]] && CMDS+=("closewait sockets --json --owners ebpf")
fi
if [[ -n ${ONLY:-} ]]; then # keep the commands matching this regex
	kept=()
	for c in "${CMDS[@]}"; do [[ $c =~ $ONLY ]] && kept+=("$c"); done
	CMDS=("${kept[@]}")
fi
# The shell command for a display name: closewait is the built binary.
shcmd() { local c=$1; [[ $c == closewait* ]] && c="$CW${c#closewait}"; printf '%s' "$c"; }

# --- cwhost lifecycle ---------------------------------------------------------
stop_host() {
	[[ -n $HOST_PID ]] || return 0
	exec 3>&- # stdin EOF: cwhost kills its children and exits
	kill -TERM "$HOST_PID" 2>/dev/null
	local i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$HOST_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$HOST_PID" 2>/dev/null; then
		log "cwhost $HOST_PID did not stop; SIGKILL"
		kill -KILL "$HOST_PID" 2>/dev/null
	fi
	wait "$HOST_PID" 2>/dev/null
	# Children die with cwhost (Pdeathsig); verify, by pid.
	sleep 0.5
	local left=()
	for p in $HOLDERS; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
	while read -r p _; do left+=("$p"); done < <(ps -eo pid=,args= | grep -F "$WORK/cwhost" | grep -v grep)
	if ((${#left[@]})); then
		log "cwhost children still running: ${left[*]}; killing them by pid:"
		ps -o pid,ppid,stat,args -p "$(IFS=,; echo "${left[*]}")" >&2
		kill -KILL "${left[@]}" 2>/dev/null
	else
		log "cwhost stopped; no holder or child processes remain"
	fi
	HOST_PID=""
	HOLDERS=""
}
cleanup() {
	[[ -n $MPID ]] && kill -TERM -- "-$MPID" 2>/dev/null # the command being timed
	[[ -n $WDPID ]] && kill "$WDPID" 2>/dev/null
	stop_host
	rm -f "$WORK/host.in"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_host() { # size -> sets HOST_PID, HOLDERS, SETUP_S
	local n=$1 hl="$WORK/host-$n.log" t0=$EPOCHREALTIME
	rm -f "$WORK/host.in"
	mkfifo "$WORK/host.in"
	# shellcheck disable=SC2086
	"$WORK/cwhost" -closewait "$n" -timeout "${SETUP_TIMEOUT}s" $CWHOST_FLAGS <"$WORK/host.in" >"$hl" 2>&1 &
	HOST_PID=$!
	exec 3>"$WORK/host.in" # held open: cwhost runs until we close it
	log "cwhost pid $HOST_PID building $n CLOSE_WAIT (log $hl)"
	local shown=0 deadline=$((SECONDS + SETUP_TIMEOUT + 30))
	while :; do
		if grep -q '^READY' "$hl"; then break; fi
		if ! kill -0 "$HOST_PID" 2>/dev/null || grep -q '^FAILED' "$hl" || ((SECONDS > deadline)); then
			log "cwhost failed at $n:"
			tail -n 20 "$hl" >&2
			stop_host
			return 1
		fi
		local lines
		lines=$(wc -l <"$hl")
		if ((lines > shown)); then
			sed -n "$((shown + 1)),${lines}p" "$hl" | sed 's/^/  cwhost /' >&2
			shown=$lines
		fi
		sleep 1
	done
	sed -n "$((shown + 1)),\$p" "$hl" | sed 's/^/  cwhost /' >&2
	HOLDERS=$(sed -n 's/^HOLDERS //p' "$hl")
	SETUP_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}')
}

# --- timing -------------------------------------------------------------------
# measure CMD: writes "seconds rss_kb exit cpu_seconds" (cpu = user + system)
# to $WORK/measure.out. The command runs in its own session (setsid) so that
# a timeout or an interrupted script ends all of it (pipelines included).
MPID=""
WDPID=""
measure() {
	local tf="$WORK/time.out" t0 t1 rc done=""
	rm -f "$tf"
	t0=$EPOCHREALTIME
	setsid /usr/bin/time -f '%e %M %U %S' -o "$tf" sh -c "$1 >/dev/null 2>>$WORK/stderr.log" &
	MPID=$!
	sleep "$CMD_TIMEOUT" &
	WDPID=$!
	wait -n -p done "$MPID" "$WDPID"
	rc=$?
	t1=$EPOCHREALTIME
	if [[ $done != "$MPID" ]]; then # the watchdog ended first: timeout
		kill -TERM -- "-$MPID" 2>/dev/null
		wait "$MPID" 2>/dev/null
		rc=124
	else
		kill "$WDPID" 2>/dev/null
		wait "$WDPID" 2>/dev/null
	fi
	MPID="" WDPID=""
	if [[ -s $tf ]]; then
		awk -v a="$t0" -v b="$t1" -v rc="$rc" 'END{printf "%.3f %s %s %.2f\n", b-a, $2, rc, $3+$4}' "$tf"
	else
		awk -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN{printf "%.3f 0 %s 0\n", b-a, rc}'
	fi >"$WORK/measure.out"
}
median() { sort -g | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'; }

declare -A SKIP # commands too slow at a smaller size
declare -A ALL  # "command|size" -> median seconds, for the scaling table

run_size() {
	local n=$1
	local before
	before=$(ss -Htan state close-wait | wc -l)
	NOTE=""
	if [[ $n != existing ]] && ((before > n / 100 + 100)); then
		NOTE="**Not a quiet host: $before CLOSE_WAIT sockets were already there before the fixture (another cwhost?); every tool saw them too.**"
		log "warning: $before CLOSE_WAIT sockets already on the host"
	fi
	if [[ $n == existing ]]; then
		# Measure the host as it is (a real host, or a cwhost started elsewhere).
		SETUP_S=0
		printf '[0s] building nothing: the host as it is\n' >"$WORK/host-$n.log"
	else
		start_host "$n" || { out ""; out "### $n CLOSE_WAIT: cwhost setup failed (see $WORK/host-$n.log)"; return 1; }
	fi
	local sockstat
	sockstat=$(grep '^TCP:' /proc/net/sockstat)
	declare -A MED RSS RC NRUN TIMES DONE PRESKIP CPUS CPU
	local name i s m c u
	for name in "${CMDS[@]}"; do
		if [[ -n ${SKIP[$name]:-} ]]; then
			log "skip: $name (${SKIP[$name]})"
			PRESKIP[$name]=1
		fi
	done
	if ((WARMUP)); then
		# Every owner scan after the first finds the /proc/PID/fd dentries
		# cached; list them once so that no tool pays that alone.
		log "warm-up: listing /proc/*/fd"
		ls -U /proc/[0-9]*/fd >/dev/null 2>&1
	fi
	LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	# Round-robin (run 1 of every command, then run 2, ...) so that noise
	# from the shared machine spreads over all commands.
	local runs=$RUNS
	[[ $n =~ ^[0-9]+$ ]] && ((n > 100000)) && runs=$RUNS_BIG
	for ((i = 1; i <= runs; i++)); do
		for name in "${CMDS[@]}"; do
			[[ -n ${PRESKIP[$name]:-} || -n ${DONE[$name]:-} ]] && continue
			measure "$(shcmd "$name")"
			read -r s m c u <"$WORK/measure.out"
			log "$n: run $i: $name: ${s}s (cpu ${u}s) ${m}KB exit $c"
			TIMES[$name]+="$s "
			CPUS[$name]+="$u "
			NRUN[$name]=$((${NRUN[$name]:-0} + 1))
			((${m:-0} > ${RSS[$name]:-0})) && RSS[$name]=$m
			((${c:-0} != 0)) && RC[$name]=$c
			if ((${c:-0} == 124)); then
				DONE[$name]=1
				SKIP[$name]="timed out after ${CMD_TIMEOUT}s at $n"
			elif awk -v s="$s" -v l="$SLOW" 'BEGIN{exit !(s > l)}'; then
				DONE[$name]=1 # not repeated, and skipped at the larger sizes
				SKIP[$name]="took ${s}s at $n"
			fi
		done
	done
	for name in "${!TIMES[@]}"; do
		MED[$name]=$(printf '%s\n' ${TIMES[$name]} | median)
		ALL["$name|$n"]=${MED[$name]}
		CPU[$name]=$(printf '%s\n' ${CPUS[$name]} | median)
		: "${RC[$name]:=0}"
	done
	LOADAVG+=" -> $(cut -d' ' -f1-3 /proc/loadavg)"

	# Sanity: counts (untimed runs).
	local sscount cwsock="" cwrep="" cwebpf=""
	sscount=$(ss -Htan state close-wait | wc -l)
	if [[ -n $CW ]]; then
		timeout "$CMD_TIMEOUT" "$CW" sockets --json >"$WORK/sockets.json" 2>>"$WORK/stderr.log"
		cwsock=$("$WORK/cwhost" jsoncount "$WORK/sockets.json" 2>&1)
		timeout "$CMD_TIMEOUT" "$CW" --json >"$WORK/report.json" 2>>"$WORK/stderr.log"
		cwrep=$("$WORK/cwhost" jsoncount "$WORK/report.json" 2>&1)
		if [[ -n $OWNERS_EBPF ]]; then
			timeout "$CMD_TIMEOUT" "$CW" sockets --json --owners ebpf >"$WORK/sockets-ebpf.json" 2>>"$WORK/stderr.log"
			cwebpf=$("$WORK/cwhost" jsoncount "$WORK/sockets-ebpf.json" 2>&1)
		fi
	fi
	stop_host

	out ""
	if [[ $n == existing ]]; then out "### the host as it is ($sscount CLOSE_WAIT)"; else out "### $n CLOSE_WAIT sockets"; fi
	out ""
	out "Fixture: $(sed -n 's/^\[[^]]*\] building //p' "$WORK/host-$n.log" | head -n 1)."
	out ""
	out "Host: $(uname -r), $(nproc) CPUs; cwhost setup ${SETUP_S}s; $sockstat; load average $LOADAVG during the runs; $runs runs per command, round-robin (median), CPU = user+system seconds (median; less disturbed by other load than wall time), peak RSS = max over runs."
	out ""
	if [[ -n $NOTE ]]; then out "$NOTE"; out ""; fi
	out "| command | median s | CPU s | runs | peak RSS MB | exit |"
	out "|---|---:|---:|---:|---:|---:|"
	for name in "${CMDS[@]}"; do
		local shown=$name
		[[ $name == closewait* ]] && shown="$name > /dev/null"
		shown=${shown//|/\\|} # a pipe inside a table cell
		if [[ -z ${MED[$name]:-} ]]; then
			out "| \`$shown\` | skipped (${SKIP[$name]:-}) | | 0 | | |"
			continue
		fi
		local med=${MED[$name]} note=""
		((RC[$name] == 124)) && med="> $CMD_TIMEOUT (timeout)"
		out "| \`$shown\` | $med | ${CPU[$name]} | ${NRUN[$name]} | $(awk -v k="${RSS[$name]:-0}" 'BEGIN{printf "%.1f", k/1024}') | ${RC[$name]} |"
	done
	local cwname header=""
	for cwname in "closewait sockets --json" "closewait --json" "closewait sockets --json --owners ebpf"; do
		[[ -n ${MED[$cwname]:-} ]] || continue
		if [[ -z $header ]]; then
			header=1
			out ""
			out "Ratios, wall (CPU): closewait's median over the other command's median."
			out ""
			out "| closewait | vs \`ss -Htan\` (target <= 1.5) | vs \`ss -Htanp\` (<= 0.1) | vs lsof (<= 0.2) | peak RSS MB (< 100) |"
			out "|---|---:|---:|---:|---:|"
		fi
		local cols="" other
		for other in "ss -Htan state close-wait" "ss -Htanp state close-wait" "lsof -nP -iTCP -sTCP:CLOSE_WAIT"; do
			cols+=" $(ratio MED "$cwname" "$other") ($(ratio CPU "$cwname" "$other")) |"
		done
		out "| \`$cwname\` |$cols $(awk -v k="${RSS[$cwname]:-0}" 'BEGIN{printf "%.1f", k/1024}') |"
	done
	out ""
	local whose="the fixture's $n plus the host's others"
	[[ $n == existing ]] && whose="every CLOSE_WAIT socket on the host"
	out "Sanity: \`ss -Htan state close-wait\` counts $sscount ($whose)."
	if [[ -n $CW ]]; then
		out "closewait sockets --json: $cwsock $(agree "$cwsock" "$sscount")"
		out "closewait --json: $cwrep $(agree "$cwrep" "$sscount")"
		[[ -n $cwebpf ]] && out "closewait sockets --json --owners ebpf: $cwebpf $(agree "$cwebpf" "$sscount")"
	else
		out "closewait: not built, no closewait rows."
	fi
	return 0
}

# ratio MED|CPU A B -> A's median / B's median
ratio() {
	local -n arr=$1
	local a=${arr[$2]:-} b=${arr[$3]:-}
	[[ -n $a && -n $b && ${RC[$3]:-0} != 124 ]] || { printf 'n/a'; return; }
	awk -v a="$a" -v b="$b" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else printf "n/a" }'
}
# agree "key=N ..." SS_COUNT -> OK / MISMATCH (within 0.5% or 10 sockets)
agree() {
	local got
	got=$(printf '%s' "$1" | grep -oE '^(sockets|close_wait)=[0-9]+' | cut -d= -f2)
	[[ -n $got ]] || { printf '(could not read a count)'; return; }
	awk -v g="$got" -v s="$2" 'BEGIN{d=g-s; if (d<0) d=-d; tol=s*0.005; if (tol<10) tol=10;
		if (d<=tol) printf "(OK: ss counts %d)", s; else printf "(MISMATCH: ss counts %d)", s}'
}

out "## closewait benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
if [[ -z $CW ]]; then
	out "" && out "closewait was not built (see above): ss/lsof/netstat rows only."
elif [[ -z ${CLOSEWAIT_BIN:-} ]]; then
	dirty=""
	[[ -n $(git status --porcelain -- cmd internal go.mod 2>/dev/null) ]] && dirty=" plus uncommitted changes in cmd/ internal/"
	out "" && out "closewait built from $(git rev-parse --short HEAD 2>/dev/null)$dirty."
fi
status=0
for n in $SIZES; do
	log "=== size $n"
	run_size "$n" || status=1
done
# Scaling: median seconds per size, and per-socket growth between the last
# two sizes ((t2/t1) / (n2/n1): 1.00 is linear).
sizes=()
for n in $SIZES; do [[ $n =~ ^[0-9]+$ ]] && sizes+=("$n"); done
if ((${#sizes[@]} >= 2)); then
	a=${sizes[-2]} b=${sizes[-1]}
	out ""
	out "### Scaling"
	out ""
	hdr="| command |" sep="|---|"
	for n in "${sizes[@]}"; do hdr+=" $n s |"; sep+="---:|"; done
	out "$hdr per-socket growth $a -> $b (1.00 = linear) |"
	out "$sep---:|"
	for name in "${CMDS[@]}"; do
		row="| \`${name//|/\\|}\` |"
		for n in "${sizes[@]}"; do row+=" ${ALL["$name|$n"]:--} |"; done
		g=$(awk -v x="${ALL["$name|$a"]:-}" -v y="${ALL["$name|$b"]:-}" -v a="$a" -v b="$b" \
			'BEGIN{ if (x > 0 && y != "") printf "%.2f", (y/x)/(b/a); else printf "-" }')
		out "$row $g |"
	done
fi
log "work dir: $WORK"
exit $status
