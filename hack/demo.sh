#!/usr/bin/env bash
# hack/demo.sh: the main job on a fresh machine. Starts the local control plane (built from
# Go modules by `make controlplane`), installs the Gatehouse CRDs and the third-party CRDs
# the children use, applies one sample set, and shows the objects and what Gatehouse
# renders for them. The cluster stays up afterwards; `make cluster-down` stops it.
#
#   SAMPLE=<dir under config/samples>   which setup to apply (default metallb-oauth2-openwrt)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAMPLE=${SAMPLE:-metallb-oauth2-openwrt}
SET=$ROOT/config/samples/$SAMPLE
[[ -d $SET ]] || { echo "demo: no sample set $SAMPLE; choose one of: $(ls "$ROOT/config/samples")" >&2; exit 1; }
GATEHOUSE=$ROOT/target/debug/gatehouse
export CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.cluster}
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
k() { kubectl --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$CLUSTER_DIR/kubectl-cache" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Local control plane (etcd, kube-apiserver, kube-controller-manager)"
"$ROOT/hack/cluster-up.sh"
k version 2>/dev/null | grep Server || true

step "CRDs: Gatehouse (config/crd) and the kinds its children use (tests/crds)"
k apply --server-side -f "$ROOT/config/crd/" -f "$ROOT/tests/crds/" >/dev/null
k wait --for=condition=Established crd --all --timeout=60s >/dev/null
k get crd -o custom-columns=NAME:.metadata.name,KIND:.spec.names.kind

step "Sample set $SAMPLE (config/samples/$SAMPLE)"
k apply --server-side -f "$SET"

step "kubectl get gatehouse -A"
k get gatehouse -A

step "What Gatehouse renders for it (gatehouse render -f config/samples/$SAMPLE)"
"$GATEHOUSE" render -f "$SET" -o json > "$CLUSTER_DIR/demo-rendered.json"
python3 - "$CLUSTER_DIR/demo-rendered.json" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["items"]
print(f"{'KIND':<28} {'NAMESPACE':<16} NAME")
for o in items:
    m = o["metadata"]
    print(f"{o['kind']:<28} {m.get('namespace', '-'):<16} {m['name']}")
print(f"{len(items)} children")
PY

step "The rendered children are accepted by the API server (server-side dry run)"
"$GATEHOUSE" render -f "$SET" 2>/dev/null | k apply --server-side --dry-run=server -f - | tail -n 5

cat <<TXT

The cluster is still running: export KUBECONFIG=$KUBECONFIG_FILE
Other setups: SAMPLE=<one of: $(ls "$ROOT/config/samples" | tr '\n' ' ')> make demo (after make cluster-down)
Stop it with: make cluster-down
TXT
