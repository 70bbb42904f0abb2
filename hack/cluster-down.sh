#!/usr/bin/env bash
# hack/cluster-down.sh: stop the local control plane started by hack/cluster-up.sh and
# remove its data. Safe to run at any time, any number of times: with nothing running it
# only tidies up. Logs are kept in $CLUSTER_DIR/logs for post-mortems.
#
# It stops, as whole process groups (each component was started with setsid):
#   - the processes named by $CLUSTER_DIR/run/*.pid, if they are still ours, and
#   - any other process whose environment carries GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR
#     (strays whose pid files were lost, e.g. after `rm -rf .cluster` or a crash mid-start).
# Processes are identified by that marker only, never by name, so other clusters (other
# worktrees, other CLUSTER_DIRs) and unrelated programs are left alone.
#
# A cluster with a node (CLUSTER_NODE=1 cluster-up.sh; hack/node-lib.sh) is stopped kubelet
# first, then its pod containers (killed through its containerd), then the rest. Then what
# the node made goes too, also when its processes were SIGKILLed or the dir was partly
# removed: pod processes left in its cgroups, every mount under $CLUSTER_DIR/node (network
# namespaces, the kubelet's root), $CLUSTER_DIR/node itself, the pod bridge, kube-proxy's
# and the kubelet's iptables chains, the kernel settings the kubelet changed. Machine-wide
# things are touched only when no other cluster's node holds the machine's node lock.
#
# Usage: cluster-down.sh [--quiet]      Environment: CLUSTER_DIR (default <repo>/.cluster)
set -euo pipefail

QUIET=false
[[ ${1:-} == --quiet ]] && QUIET=true

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-${GATEHOUSE_CLUSTER_DIR:-$REPO_ROOT/.cluster}}
CLUSTER_DIR=$(realpath -m "$CLUSTER_DIR") # absolute, as in the processes' marker
RUN=$CLUSTER_DIR/run
CONTROLPLANE_BIN_FALLBACK=${CONTROLPLANE_BIN:-}

log() { $QUIET || echo "cluster-down: $*" >&2; }
LOG_PREFIX=cluster-down
# shellcheck source=hack/node-lib.sh
source "$REPO_ROOT/hack/node-lib.sh"

is_ours() {
	local pid=$1
	[[ $pid =~ ^[0-9]+$ ]] && grep -qzxF "GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR" /proc/"$pid"/environ 2>/dev/null
}

# Take the state dir's lock unless cluster-up.sh (our caller) already holds it.
if [[ -d $CLUSTER_DIR && -z ${GATEHOUSE_CLUSTER_LOCKED:-} ]]; then
	exec 9>"$CLUSTER_DIR/.lock"
	flock -w 120 9 || { log "timed out waiting for the lock on $CLUSTER_DIR"; exit 1; }
fi

# A node's pods first: the kubelet would restart them, and it leaves them running when it
# exits.
node_stop_pods "$CLUSTER_DIR"

# Never signal ourselves or our own process group: the watchdog runs this script as
# itself (exec), inside the group it would otherwise kill.
self_pgid=$(ps -o pgid= -p $$ | tr -d ' ')

# Collect the targets: recorded pids first, then a sweep of /proc for the marker.
declare -A targets=()
for f in "$RUN"/*.pid; do
	[[ -f $f ]] || continue
	pid=$(cat "$f" 2>/dev/null || true)
	if is_ours "$pid"; then targets[$pid]=1; fi
done
# One grep over every process's environment (NUL-separated, hence -z).
for f in $(grep -lzxF "GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR" /proc/[0-9]*/environ 2>/dev/null || true); do
	pid=${f#/proc/}
	targets[${pid%/environ}]=1
done

# signal SIG: send SIG to each target's process group (it is the group leader when
# started by cluster-up), and to the process itself in case it is not a leader.
signal() {
	local pid pgid
	for pid in "${!targets[@]}"; do
		[[ $pid == "$$" ]] && continue
		pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || continue
		[[ -n $pgid ]] || continue
		if [[ $pgid != "$self_pgid" && $pgid != 1 ]]; then kill -s "$1" -- "-$pgid" 2>/dev/null || true; fi
		kill -s "$1" "$pid" 2>/dev/null || true
	done
}
alive() {
	local pid
	for pid in "${!targets[@]}"; do
		[[ $pid == "$$" ]] && continue
		is_ours "$pid" && return 0
	done
	return 1
}

if ((${#targets[@]})); then
	log "stopping pids ${!targets[*]}"
	# Everything but etcd first, until the API server is gone: with a node (the lease
	# endpoint reconciler) it removes its endpoint from etcd on the way out and hangs
	# while etcd is gone; and it waits for its clients' connections to close.
	api=$(cat "$RUN/kube-apiserver.pid" 2>/dev/null || true)
	etcd=$(cat "$RUN/etcd.pid" 2>/dev/null || true)
	if is_ours "$api" && is_ours "$etcd"; then
		unset "targets[$etcd]"
		signal TERM
		targets[$etcd]=1
		for _ in $(seq 100); do is_ours "$api" || break; sleep 0.1; done
	fi
	# TERM first (the apiserver shuts down cleanly in a second or two), KILL after 10 s.
	signal TERM
	for _ in $(seq 100); do alive || break; sleep 0.1; done
	if alive; then
		log "still running after 10s: sending KILL"
		signal KILL
		for _ in $(seq 50); do alive || break; sleep 0.1; done
	fi
	alive && { log "could not stop every process"; exit 1; }
fi

# The node's leftovers (hack/node-lib.sh). kube-proxy --cleanup needs the binary: the one
# the node was started with, else the caller's.
node_bin=$CONTROLPLANE_BIN_FALLBACK
[[ $(node_owner) == "$CLUSTER_DIR" && -x $(node_owner_bin) ]] && node_bin=$(node_owner_bin)
node_teardown "$CLUSTER_DIR" "$node_bin"

# etcd's data dir on tmpfs: the recorded path (after checking it looks like ours), and the
# name cluster-up derives from CLUSTER_DIR in each place it may put it, in case the
# record is gone (e.g. `rm -rf .cluster` while the cluster ran).
name=gatehouse-etcd-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-12)
datas=("${CLUSTER_TMPFS:-/dev/shm}/$name" "/dev/shm/$name" "${TMPDIR:-/tmp}/$name")
if [[ -f $RUN/etcd-data-dir ]]; then datas+=("$(cat "$RUN/etcd-data-dir")"); fi
for data in "${datas[@]}"; do
	if [[ $(basename -- "$data") == gatehouse-etcd-* && -d $data ]]; then rm -rf -- "$data"; fi
done
# Everything but the logs (kept for post-mortems) and the lock file.
rm -rf -- "$RUN" "$CLUSTER_DIR/pki" "$CLUSTER_DIR/kcm" "$CLUSTER_DIR/kubeconfig" \
	"$CLUSTER_DIR/kubeconfig.tmp" "$CLUSTER_DIR/cluster.env" "$CLUSTER_DIR/audit-policy.yaml"
log "down"
