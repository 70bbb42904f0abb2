#!/usr/bin/env bash
# hack/demo.sh: the main job on a fresh machine. Starts the local control plane (built from
# Go modules by `make controlplane`), installs the Gatehouse CRDs and the third-party CRDs
# the children use, applies one sample set, runs the operator, plays the controllers the
# local cluster lacks (cert-manager, load balancer, external-dns) and shows the objects,
# their Ready conditions and the children. The cluster stays up afterwards; `make cluster-down` stops it.
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
k apply --server-side -f "$ROOT/config/crd/gatehouse.dev_crds.yaml" -f "$ROOT/tests/crds/" >/dev/null
k wait --for=condition=Established crd --all --timeout=60s >/dev/null
k get crd -o custom-columns=NAME:.metadata.name,KIND:.spec.names.kind

step "Sample set $SAMPLE (config/samples/$SAMPLE)"
k apply --server-side -f "$SET"

step "The operator (gatehouse run), in the background; log in .cluster/operator.log"
pkill -f "$GATEHOUSE run" 2>/dev/null || true
# The marker lets `make cluster-down` stop the operator together with the cluster.
GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR KUBECONFIG=$KUBECONFIG_FILE setsid "$GATEHOUSE" run --http-addr=127.0.0.1:18080 >"$CLUSTER_DIR/operator.log" 2>&1 </dev/null &
echo "operator pid $!"

step "Playing cert-manager, the load balancer and external-dns until everything is Ready"
for i in $(seq 1 60); do
  sleep 1
  python3 "$ROOT/hack/play-controllers.py" kubectl --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$CLUSTER_DIR/kubectl-cache"
  not_ready=$(k get gatehouse -A -o json | python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin)["items"] if not any(c["type"]=="Ready" and c["status"]=="True" for c in o.get("status",{}).get("conditions",[]))))')
  [[ $not_ready == 0 ]] && { echo "all Ready after ${i}s"; break; }
done

step "kubectl get gatehouse -A"
k get gatehouse -A

step "The children Gatehouse created (label app.kubernetes.io/managed-by=gatehouse)"
k get services,ingresses,networkpolicies,certificates,dnsendpoints,ipaddresspools,l2advertisements,bgpadvertisements,network-attachment-definitions,middlewares,ciliumnetworkpolicies,ciliumloadbalancerippools \
  -A -l app.kubernetes.io/managed-by=gatehouse 2>/dev/null

step "Status of one ExposedApp"
first=$(k get xapp -A -o jsonpath='{.items[0].metadata.namespace}/{.items[0].metadata.name}')
k -n "${first%%/*}" get xapp "${first##*/}" -o jsonpath='{.status}' | python3 -m json.tool

cat <<TXT

The cluster and the operator are still running: export KUBECONFIG=$KUBECONFIG_FILE
Other setups: make cluster-down; SAMPLE=<one of: $(ls "$ROOT/config/samples" | tr '\n' ' ')> make demo
Stop everything with: make cluster-down
TXT
