#!/usr/bin/env bash
# hack/bgp-check.sh: check end to end that MetalLB announces a LoadBalancer address over
# BGP, with objects of the shape Gatehouse renders: an IPAddressPool (autoAssign: false)
# and a BGPAdvertisement named after it, a metallb.io/v1beta2 BGPPeer in metallb-system
# (myASN, peerASN, peerAddress, nodeSelectors), and a Service of type LoadBalancer naming
# the pool by annotation, with externalTrafficPolicy: Local and a real pod on the node.
#
# Needs a cluster with a node (CLUSTER_NODE=1 hack/cluster-up.sh), the backend image
# imported (hack/node-import.sh), and `hack/stack-up.sh metallb bgp` (MetalLB's controller,
# its speaker and the router). Waits until the router holds <address>/32 with next hop the
# node's address (NODE_IP), deletes the Service, waits until the route is withdrawn, and
# removes what it made. Prints the router's RIB at each step. The Deployment starts with
# no replica: while the Service has an address but no ready endpoint on the node, nothing
# may be announced (externalTrafficPolicy: Local); then one pod is started.
#
# Environment: CLUSTER_DIR (default <repo>/.cluster), BACKEND_IMAGE (default
# gatehouse.local/backend:1), BGP_CHECK_POOL (default 203.0.113.16/28), BGP_CHECK_TIMEOUT
# (seconds per wait, default 90), KUBECTL.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=$(cd "${CLUSTER_DIR:-$REPO_ROOT/.cluster}" && pwd)
LOG_PREFIX=bgp-check
# shellcheck source=hack/lib.sh
source "$REPO_ROOT/hack/lib.sh"
KUBECTL=${KUBECTL:-kubectl}
TIMEOUT=${BGP_CHECK_TIMEOUT:-90}
k() { "$KUBECTL" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }
env_of() { sed -n "s/^$2=//p" "$CLUSTER_DIR/$1" 2>/dev/null; }

node=$(env_of cluster.env NODE_NAME)
node_ip=$(env_of cluster.env NODE_IP)
[[ -n $node && -n $node_ip ]] || die "no node at $CLUSTER_DIR: start the cluster with CLUSTER_NODE=1"
rib=$(env_of stack.env BGP_RIB_FILE)
[[ -n $rib && -f $rib ]] || die "no router: run hack/stack-up.sh metallb bgp first"
router=$(env_of stack.env BGP_ROUTER_ADDR)
router_asn=$(env_of stack.env BGP_ROUTER_ASN)
speaker_asn=$(env_of stack.env BGP_SPEAKER_ASN)
image=${BACKEND_IMAGE:-gatehouse.local/backend:1}
name=bgp-check-$$
ns=$name

cleanup() {
	k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	k -n metallb-system delete bgppeer,bgpadvertisement,ipaddresspool "$name" --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

# until_ok WHAT CMD...: poll CMD every 0.5 s until it succeeds, at most $TIMEOUT seconds.
until_ok() {
	local what=$1 deadline=$((SECONDS + TIMEOUT))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { log "timed out after ${TIMEOUT}s: $what; RIB: $(cat "$rib")"; exit 1; }
		sleep 0.5
	done
}

k apply -f - >/dev/null <<-EOF
	apiVersion: metallb.io/v1beta1
	kind: IPAddressPool
	metadata: {name: $name, namespace: metallb-system}
	spec: {addresses: ["${BGP_CHECK_POOL:-203.0.113.16/28}"], autoAssign: false}
	---
	apiVersion: metallb.io/v1beta1
	kind: BGPAdvertisement
	metadata: {name: $name, namespace: metallb-system}
	spec: {ipAddressPools: [$name]}
	---
	apiVersion: metallb.io/v1beta2
	kind: BGPPeer
	metadata: {name: $name, namespace: metallb-system}
	spec:
	  myASN: $speaker_asn
	  peerASN: $router_asn
	  peerAddress: $router
	  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: $node}}]
	---
	apiVersion: v1
	kind: Namespace
	metadata: {name: $ns}
	---
	apiVersion: apps/v1
	kind: Deployment
	metadata: {name: web, namespace: $ns}
	spec:
	  replicas: 0
	  selector: {matchLabels: {app: web}}
	  template:
	    metadata: {labels: {app: web}}
	    spec:
	      automountServiceAccountToken: false
	      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
	      containers:
	      - name: backend
	        image: $image
	        imagePullPolicy: Never
	        env:
	        - {name: PORTS, value: "8080"}
	        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
	        ports: [{containerPort: 8080}]
	        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
	---
	apiVersion: v1
	kind: Service
	metadata:
	  name: web
	  namespace: $ns
	  annotations: {metallb.io/address-pool: $name}
	spec:
	  type: LoadBalancer
	  externalTrafficPolicy: Local
	  selector: {app: web}
	  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
started=$SECONDS
ip=
assigned() { ip=$(k -n "$ns" get service web -o jsonpath='{.status.loadBalancer.ingress[0].ip}') && [[ -n $ip ]]; }
until_ok "MetalLB assigning an address to $ns/web" assigned
log "MetalLB assigned $ip to $ns/web"
quiet=$((SECONDS + 5))
while ((SECONDS < quiet)); do
	! jq -e --arg p "$ip/32" '.routes | any(.prefix == $p)' "$rib" >/dev/null ||
		die "$ip/32 announced without a ready endpoint on the node; RIB: $(cat "$rib")"
	sleep 0.5
done
log "not announced for 5s without a pod (ETP Local); starting one"
k -n "$ns" scale deployment web --replicas=1 >/dev/null
started=$SECONDS
announced() { jq -e --arg p "$ip/32" --arg nh "$node_ip" '.routes | any(.prefix == $p and .nextHop == $nh)' "$rib"; }
until_ok "the router receiving $ip/32 with next hop $node_ip" announced
log "announced $((SECONDS - started))s after the pod was asked for; RIB: $(cat "$rib")"
k -n "$ns" get pods -o wide --no-headers | sed 's/^/bgp-check: pod /'
k -n metallb-system get servicebgpstatus -l metallb.io/service-name=web,metallb.io/service-namespace="$ns" \
	-o jsonpath='{range .items[*]}{.status}{"\n"}{end}' | sed 's/^/bgp-check: ServiceBGPStatus /'
k -n "$ns" delete service web >/dev/null
deleted=$SECONDS
withdrawn() { jq -e --arg p "$ip/32" '.routes | all(.prefix != $p)' "$rib"; }
until_ok "the router withdrawing $ip/32" withdrawn
log "withdrawn $((SECONDS - deleted))s after the Service was deleted; RIB: $(cat "$rib")"
log "OK: $ip/32 announced over BGP from node $node (next hop $node_ip) to $router AS $router_asn, and withdrawn"
