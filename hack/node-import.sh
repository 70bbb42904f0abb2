#!/usr/bin/env bash
# hack/node-import.sh ARCHIVE...: import OCI (or docker) image archives into the containerd
# of the local cluster's node (CLUSTER_NODE=1 hack/cluster-up.sh), namespace k8s.io, where
# the kubelet finds them. Nothing can be pulled here: pods use the imported names with
# imagePullPolicy: Never (or IfNotPresent). The kubelet's image GC is off, so imported
# images stay for the cluster's life.
#
# Environment: CLUSTER_DIR (default <repo>/.cluster).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=$(realpath -m "${CLUSTER_DIR:-$REPO_ROOT/.cluster}")
die() { echo "node-import: $*" >&2; exit 1; }
(($#)) || die "usage: node-import.sh ARCHIVE..."
sock=$(sed -n 's/^CONTAINERD_SOCKET=//p' "$CLUSTER_DIR/cluster.env" 2>/dev/null || true)
[[ -n $sock && -S $sock ]] || die "no node at $CLUSTER_DIR: start one with CLUSTER_NODE=1 hack/cluster-up.sh"
for a in "$@"; do
	[[ -f $a ]] || die "$a: no such file"
	ctr -a "$sock" -n k8s.io images import "$a" | sed 's/^/node-import: /' >&2 ||
		die "importing $a failed"
done
