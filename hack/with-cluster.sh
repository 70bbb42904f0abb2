#!/usr/bin/env bash
# hack/with-cluster.sh CMD...: run CMD against a fresh local control plane with the real
# controllers of hack/stack-up.sh (cert-manager, MetalLB, external-dns into BIND9) and
# always stop them afterwards (success, failure or interrupt). A watchdog tied to this script's pid stops
# the cluster even if this script is killed with SIGKILL.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${CONTROLPLANE_BIN:?run through make (it builds the control plane and sets CONTROLPLANE_BIN)}"
export CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.cluster}
export CLUSTER_KUBECONFIG=$CLUSTER_DIR/kubeconfig

cleanup() { "$ROOT/hack/cluster-down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The CRDs the tests need must exist before the controller manager starts (its garbage
# collector only re-discovers resource types every 30 s); cluster-up applies config/crd
# and tests/crds first. With a real node (kubelet, containerd, scheduler, kube-proxy: make
# node-deps pause-image), started once per run like the rest; CLUSTER_NODE=0 to go without.
export CLUSTER_NODE=${CLUSTER_NODE:-1}
CLUSTER_WATCH_PID=$$ "$ROOT/hack/cluster-up.sh"
# Started once per run, like the control plane; tests share them.
"$ROOT/hack/stack-up.sh"
# The images the node runs (make image backend-image), under the names the tests use.
if [[ $CLUSTER_NODE == 1 ]]; then
	mapfile -t archives < <("$ROOT/hack/images.sh" paths)
	"$ROOT/hack/node-import.sh" "${archives[@]}"
	mapfile -t refs < <("$ROOT/hack/images.sh" refs)
	export GATEHOUSE_IMAGE=${refs[0]} BACKEND_IMAGE=${refs[1]} OAUTH2_PROXY_IMAGE=${refs[2]}
fi
"$@"
