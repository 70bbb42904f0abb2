# hack/lib.sh: helpers shared by cluster-up.sh and stack-up.sh (sourced, not run).
# The caller sets CLUSTER_DIR (absolute), RUN (pid files), LOGS (log files), TIMEOUT
# (seconds) and LOG_PREFIX (how its messages start).

log() { echo "${LOG_PREFIX:-hack}: $*" >&2; }
die() { log "$*"; exit 1; }

# Every process we start carries GATEHOUSE_CLUSTER_DIR=<this dir> in its environment.
# cluster-down.sh uses it to find strays whose pid files were lost, and the scripts use
# it to make sure a pid from a pid file is still ours (pids get reused).
is_ours() {
	local pid=$1
	[[ $pid =~ ^[0-9]+$ ]] && grep -qzxF "GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR" /proc/"$pid"/environ 2>/dev/null
}
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

# launch NAME CMD...: start CMD in its own session and process group (setsid), detached
# from our stdin/stdout/stderr and from every other inherited fd (notably the lock on fd
# 9, and make's or a CI harness's pipes, which would otherwise be held open for as long
# as the component runs), with the marker in its environment. The pid goes to run/NAME.pid.
launch() {
	local name=$1
	shift
	(
		for fd in "/proc/$BASHPID/fd"/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
		done
		exec env GATEHOUSE_CLUSTER_DIR="$CLUSTER_DIR" setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1
	) &
	echo $! >"$RUN/$name.pid"
}

# wait_for WHAT PID CMD...: poll CMD until it succeeds. Fails at once if PID (the
# component being waited for) has died, or after $TIMEOUT seconds.
wait_for() {
	local what=$1 pid=$2 deadline=$((SECONDS + TIMEOUT))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$what exited while starting; last lines of its log:"
			tail -n 25 "$LOGS/$what.log" >&2 || true
			return 1
		fi
		if ((SECONDS >= deadline)); then
			log "timed out after ${TIMEOUT}s waiting for $what; last lines of its log:"
			tail -n 25 "$LOGS/$what.log" >&2 || true
			return 1
		fi
		sleep 0.2
	done
}

# summarize LOG: one closing line "N passed, N failed" summed over every `test result:` line
# of the cargo test output in LOG, so the last line of a run says what ran.
summarize() {
	awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
	     END { printf "%d passed, %d failed\n", p, f }' "$1"
}
