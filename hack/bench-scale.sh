#!/usr/bin/env bash
# hack/bench-scale.sh: `make bench-scale` (issue 10). Starts a control plane of its own
# (etcd + kube-apiserver + kube-controller-manager, no node), runs
# operator/examples/bench_scale.rs against it (baseline client, operator cold start,
# restart, idle) and always stops everything again: on success, failure, Ctrl-C, and, through
# cluster-up's watchdog, when this script is killed.
#
# Environment (all optional):
#   N                   number of apps (default 1000)
#   IDLE                seconds of the idle measurement (default 60)
#   BENCH_CLUSTER_DIR   the bench's cluster state directory (default target/bench-scale/cluster).
#                       Never the test cluster's: make exports CLUSTER_DIR (.cluster) to every
#                       recipe, so the bench does not read CLUSTER_DIR at all.
#   BENCH_ARGS          extra flags for the bench binary (e.g. --apps-per-namespace 50)
# Needs CONTROLPLANE_BIN (make sets it) and the release build of the operator and the
# example (the make target builds them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${CONTROLPLANE_BIN:?run through make bench-scale (it builds the control plane and sets CONTROLPLANE_BIN)}"

N=${N:-1000}
IDLE=${IDLE:-60}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "bench-scale: N must be a positive number, not '$N'" >&2; exit 2; }
[[ $IDLE =~ ^[0-9]+$ ]] || { echo "bench-scale: IDLE must be seconds, not '$IDLE'" >&2; exit 2; }

OUT=$ROOT/target/bench-scale
mkdir -p "$OUT"
dir=${BENCH_CLUSTER_DIR:-$OUT/cluster}
mkdir -p "$dir"
CLUSTER_DIR=$(cd "$dir" && pwd)
if [[ $CLUSTER_DIR == "$(realpath -m "$ROOT/.cluster")" ]]; then
	echo "bench-scale: BENCH_CLUSTER_DIR must not be the test cluster's $ROOT/.cluster" >&2
	exit 2
fi
export CLUSTER_DIR CLUSTER_KUBECONFIG=$CLUSTER_DIR/kubeconfig
export CLUSTER_NODE=0

OPERATOR=$ROOT/target/release/gatehouse
BENCH=$ROOT/target/release/examples/bench_scale
for b in "$OPERATOR" "$BENCH"; do
	[[ -x $b ]] || { echo "bench-scale: $b is missing; run make bench-scale (it builds it)" >&2; exit 1; }
done

# The bench first (it runs in the background so that a signal to this script is handled at
# once), then the cluster, which also stops the operator: it carries
# GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR, cluster-down's marker.
bench_pid=
cleanup() {
	if [[ -n $bench_pid ]] && kill -0 "$bench_pid" 2>/dev/null; then
		kill "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	CLUSTER_DIR=$CLUSTER_DIR "$ROOT/hack/cluster-down.sh" --quiet || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
# A fresh cluster every run: nothing left from an earlier one.
"$ROOT/hack/cluster-down.sh" --quiet
CLUSTER_WATCH_PID=$$ "$ROOT/hack/cluster-up.sh"
echo "bench-scale: cluster up in $((SECONDS - started)) s ($CLUSTER_DIR)" >&2

# shellcheck disable=SC2086 # BENCH_ARGS is split on purpose
"$BENCH" --apps "$N" --idle "$IDLE" \
	--kubeconfig "$CLUSTER_KUBECONFIG" --cluster-dir "$CLUSTER_DIR" \
	--operator "$OPERATOR" --out "$OUT/$N.json" --log-dir "$OUT/logs" ${BENCH_ARGS:-} &
bench_pid=$!
wait "$bench_pid"
bench_pid=
echo "bench-scale: done in $((SECONDS - started)) s" >&2
