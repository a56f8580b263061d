# lib.sh: what the bench scripts that run closewait share (sourced, not run).

# bench_extra [-- EXTRA...]: given what follows the caller's positional
# arguments, takes an optional "--" and leaves the rest in EXTRA; anything
# else is a usage error (the caller's usage function).
bench_extra() {
	if [[ $# -gt 0 ]]; then
		[[ $1 == -- ]] || usage
		shift
	fi
	EXTRA=("$@")
}

# proc_kb PID FIELD: a /proc/PID/status field in kB (VmRSS, VmHWM); fails
# once the process is gone.
proc_kb() { awk -v k="$2:" '$1 == k { print $2; found = 1 } END { exit !found }' "/proc/$1/status" 2>/dev/null; }

# proc_ticks PID: its utime + stime in clock ticks; fails once it is gone.
proc_ticks() {
	local stat rest
	stat=$(<"/proc/$1/stat") || return 1
	rest=${stat##*) } # fields after "pid (comm) ": state is field 3
	set -- $rest
	echo $((${12} + ${13})) # utime, stime: fields 14 and 15
}

# stop_pid PID: SIGTERM, then SIGKILL if it still runs 5 s later (saying
# so on stderr); then reaps it. Its exit status is left in STOP_RC.
stop_pid() {
	local p=$1 i
	STOP_RC=0
	if kill -0 "$p" 2>/dev/null; then
		kill -TERM "$p" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			echo "# $p still running 5 s after SIGTERM: SIGKILL" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	fi
	wait "$p" 2>/dev/null || STOP_RC=$?
}
