#!/usr/bin/env bash
# hack/demo.sh: the main job on a fresh machine. Starts the local control plane (built from
# Go modules by `make controlplane`) with the Gatehouse CRDs and the real upstream CRDs of
# the kinds its children use, starts the real controllers that consume those children
# (cert-manager, MetalLB's controller, external-dns into BIND9: hack/stack-up.sh), applies
# one sample set, runs the operator, and shows the set becoming Ready: the certificates
# cert-manager issued, the addresses MetalLB assigned and what BIND answers. Only what
# cannot run on one machine is played, and said so: Hetzner's cloud load balancer and
# Cilium's LB-IPAM. The cluster stays up afterwards; `make cluster-down` stops it.
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
# The test support crate (sample-workloads) finds the cluster, and its stack.env, by this.
export CLUSTER_KUBECONFIG=$KUBECONFIG_FILE
k() { kubectl --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$CLUSTER_DIR/kubectl-cache" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# ready_count: how many of the set's own Gatehouse objects are not Ready yet.
ready_count() {
	k get -f "$SET" -o json | python3 -c '
import json, sys
items = [o for o in json.load(sys.stdin)["items"] if o["apiVersion"].startswith("gatehouse.dev/")]
ready = lambda o: any(c["type"] == "Ready" and c["status"] == "True" for c in o.get("status", {}).get("conditions", []))
print(sum(1 for o in items if not ready(o)))'
}

# Which load balancer the set's ClusterNetwork uses decides what is real: MetalLB runs
# here; Hetzner's and Cilium's cannot, and MetalLB would claim their Services.
provider=$(sed -n 's/^[[:space:]]*provider:[[:space:]]*\([A-Za-z]*\).*/\1/p' "$SET"/*clusternetwork*.yaml | head -n1)
provider=${provider:-None}
case $provider in
Hetzner | Cilium) components=(cert-manager dns oidc traefik) played=true ;;
*) components=(cert-manager metallb dns oidc traefik) played=false ;;
esac

# With a node (the default), the operator runs from its own image under its own chart and
# the set's workloads run as real pods; CLUSTER_NODE=0 runs the operator as a host process.
export CLUSTER_NODE=${CLUSTER_NODE:-1}
step "Local control plane (etcd, kube-apiserver, kube-controller-manager) with the CRDs$([[ $CLUSTER_NODE == 1 ]] && echo ", and a node (kubelet, containerd, kube-proxy, scheduler)")"
"$ROOT/hack/cluster-up.sh"
k version 2>/dev/null | grep Server || true
[[ $CLUSTER_NODE == 1 ]] && k get nodes -o wide
echo "$(k get crd -o name | wc -l) CRDs: Gatehouse's (config/crd) and the real upstream ones its children use (tests/crds)"

step "The real controllers: ${components[*]} (hack/stack-up.sh; logs in .cluster/logs)"
$played && "$ROOT/hack/stack-down.sh" metallb
"$ROOT/hack/stack-up.sh" "${components[@]}"
# shellcheck disable=SC1091
source "$CLUSTER_DIR/stack.env"
echo "cert-manager $(sed -n 's/.*cert-manager\/cert-manager \(v[0-9.]*\)$/\1/p' "$ROOT/tests/stack/cert-manager/go.mod" | head -n1)," \
	"MetalLB $(sed -n 's/.*go.universe.tf\/metallb \(v[0-9.]*\)$/\1/p' "$ROOT/tests/stack/metallb/go.mod" | head -n1)," \
	"external-dns $(sed -n 's/.*sigs.k8s.io\/external-dns \(v[0-9.]*\)$/\1/p' "$ROOT/tests/stack/external-dns/go.mod" | head -n1)," \
	"$(named -v)"
if $played; then
	echo "PLAYED: this set's load balancer ($provider) cannot run on one machine: its Services get"
	echo "        their addresses from hack/play-load-balancers.py, and MetalLB is not running."
fi

step "Sample set $SAMPLE (config/samples/$SAMPLE)"
k apply --server-side -f "$SET"

if [[ $CLUSTER_NODE == 1 ]]; then
	step "Images built here (no registry): the operator and the test backend, imported into the node's containerd"
	mapfile -t archives < <("$ROOT/hack/images.sh" paths)
	"$ROOT/hack/node-import.sh" "${archives[@]}"
	mapfile -t refs < <("$ROOT/hack/images.sh" refs)
	echo "operator image: ${refs[0]} ($(cat "${archives[0]%.oci.tar}.digest"))"

	step "The operator, installed by its Helm chart into gatehouse-system (Pod Security: restricted)"
	k apply --server-side -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Namespace
		metadata:
		  name: gatehouse-system
		  labels:
		    pod-security.kubernetes.io/enforce: restricted
		    pod-security.kubernetes.io/enforce-version: latest
	EOF
	: "${HELM_BIN:?run through make demo (it builds helm)}"
	"$HELM_BIN" --kubeconfig "$KUBECONFIG_FILE" upgrade --install gatehouse "$ROOT/charts/gatehouse" \
		--namespace gatehouse-system --take-ownership \
		--set image.repository="${refs[0]%:*}" --set image.tag="${refs[0]##*:}" --set image.pullPolicy=Never
	k -n gatehouse-system rollout status deploy/gatehouse --timeout=180s
	k -n gatehouse-system get pods -o wide

	step "The set's workloads as real pods (the test backend answers with its pod name; the OAuth2 Proxy app runs OAuth2 Proxy), and the IngressClasses of its tiers"
	cargo run -q -p gatehouse-tests --bin sample-workloads -- "$SET" | k apply --server-side -f -

	step "Traefik, one per tier, serving the set's IngressClasses (ingress-nginx tiers through its NGINX provider)"
	cargo run -q -p gatehouse-tests --bin sample-workloads -- --traefik "$SET"
else
	step "The operator (gatehouse run) as a host process; log in .cluster/operator.log"
	pkill -f "$GATEHOUSE run" 2>/dev/null || true
	# The marker lets `make cluster-down` stop the operator together with the cluster.
	GATEHOUSE_CLUSTER_DIR=$CLUSTER_DIR KUBECONFIG=$KUBECONFIG_FILE setsid "$GATEHOUSE" run --http-addr=127.0.0.1:18080 >"$CLUSTER_DIR/operator.log" 2>&1 </dev/null &
	echo "operator pid $!"
fi

step "Waiting for every object to be Ready (certificates issued, addresses assigned, records published)"
not_ready=unknown
for i in $(seq 1 120); do
	sleep 1
	if $played; then python3 "$ROOT/hack/play-load-balancers.py" kubectl --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$CLUSTER_DIR/kubectl-cache"; fi
	not_ready=$(ready_count)
	[[ $not_ready == 0 ]] && { echo "all Ready after ${i}s"; break; }
done
[[ $not_ready == 0 ]] || echo "demo: $not_ready objects not Ready after 120 s; see kubectl get gatehouse -A and .cluster/logs" >&2

step "kubectl get gatehouse -A"
k get gatehouse -A

if [[ $CLUSTER_NODE == 1 ]]; then
	step "Pods on the node: the operator and the set's workloads"
	set_namespaces=$(k get -f "$SET" -o jsonpath='{range .items[?(@.kind=="Namespace")]}{.metadata.name}{" "}{end}')
	for ns in gatehouse-system $set_namespaces; do
		k -n "$ns" get pods -o wide --no-headers 2>/dev/null | sed "s|^|$ns  |"
	done
	k wait --for=condition=Ready pods --all -n gatehouse-system --timeout=60s >/dev/null
	for ns in $set_namespaces; do
		[[ -n $(k -n "$ns" get pods -o name) ]] || continue
		k wait --for=condition=Ready pods --all -n "$ns" --timeout=120s >/dev/null
	done
	echo "all pods Ready"
fi

step "The children Gatehouse created (label app.kubernetes.io/managed-by=gatehouse)"
k get services,ingresses,networkpolicies,certificates,dnsendpoints,ipaddresspools,l2advertisements,bgpadvertisements,bgppeers,network-attachment-definitions,multi-networkpolicies,middlewares,httproutes,referencegrants,ciliumnetworkpolicies,ciliumloadbalancerippools,ciliumbgpclusterconfigs,ciliumbgppeerconfigs,ciliumbgpadvertisements \
	-A -l app.kubernetes.io/managed-by=gatehouse 2>/dev/null

step "Certificates issued by cert-manager (openssl on each Secret; verified against the stack's CA)"
k get certificates -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.spec.secretName}{"\n"}{end}' |
	while read -r ns secret; do
		pem=$(mktemp)
		k -n "$ns" get secret "$secret" -o jsonpath='{.data.tls\.crt}' | base64 -d >"$pem" || true
		echo "-- $ns/$secret"
		openssl x509 -in "$pem" -noout -subject -issuer -ext subjectAltName 2>/dev/null | sed 's/^/   /'
		printf '   '
		openssl verify -CAfile "$CA_CERT" "$pem" 2>&1 | sed "s|$pem|chain|"
		rm -f "$pem"
	done

step "LoadBalancer addresses ($($played && echo "PLAYED: $provider" || echo "assigned by the real MetalLB controller"))"
k get services -A -o json | python3 -c '
import json, sys
for s in json.load(sys.stdin)["items"]:
    if s["spec"].get("type") != "LoadBalancer":
        continue
    m = s["metadata"]; a = m.get("annotations", {})
    ips = [i.get("ip") for i in s.get("status", {}).get("loadBalancer", {}).get("ingress", [])]
    asked = a.get("metallb.io/loadBalancerIPs") or a.get("lbipam.cilium.io/ips") or ("pool " + a["metallb.io/address-pool"] if "metallb.io/address-pool" in a else "any")
    print("   %s/%s: %s (asked: %s)" % (m["namespace"], m["name"], ", ".join(ips) or "pending", asked))'

step "DNS: what each tier's BIND server answers (dig @127.0.0.1 -p PORT), published by external-dns"
k get dnsendpoints -A -o json | python3 -c '
import json, sys
for d in json.load(sys.stdin)["items"]:
    tier = d["metadata"].get("labels", {}).get("gatehouse.dev/dns-tier", "?")
    for e in d["spec"].get("endpoints", []):
        print(tier, e["dnsName"], e["recordType"])' | sort -u |
	while read -r tier name type; do
		port_var=DNS_${tier^^}_PORT
		printf '   %-8s %-45s %-4s -> %s\n' "$tier" "$name" "$type" \
			"$(dig +short @127.0.0.1 -p "${!port_var}" "$name" "$type" | tr '\n' ' ')"
	done

if [[ $CLUSTER_NODE == 1 ]]; then
	# shellcheck disable=SC1091
	source "$CLUSTER_DIR/stack.env"
	step "Real requests: names resolved by the tier's BIND server, sent to that tier's Traefik (the published address is the router's or load balancer's; here it forwards to Traefik on loopback)"
	while IFS=$'\t' read -r tier host url what; do
		port_var=DNS_${tier^^}_PORT addr_var=TRAEFIK_${tier^^}_ADDR
		published=$(dig +short @127.0.0.1 -p "${!port_var}" "$host" A | head -n1)
		echo "-- $what: $host -> ${published:-?} ($tier BIND) -> Traefik $tier ${!addr_var}"
		echo "   \$ curl -i --cacert $CA_CERT --resolve $host:443:${!addr_var} --resolve $host:80:${!addr_var} $url"
		# Traefik picks up new Ingresses and endpoints within seconds: retry a few times.
		for _ in $(seq 1 30); do
			answer=$(curl -sS -i --max-time 5 --cacert "$CA_CERT" --resolve "$host:443:${!addr_var}" \
				--resolve "$host:80:${!addr_var}" "$url" 2>&1 | tr -d '\r') || true
			code=$(head -n1 <<<"$answer" | awk '{print $2}')
			[[ $code =~ ^(200|301|302|308)$ ]] && break
			sleep 1
		done
		# The status line, the Location header if any, and the first two lines of the body.
		awk 'NR == 1 || tolower($0) ~ /^location:/ { print "   " $0 } body && n < 2 { print "   " $0; n++ } /^$/ { body = 1 }' <<<"$answer"
	done < <(cargo run -q -p gatehouse-tests --bin sample-workloads -- --requests "$SET")
fi

step "Status of one ExposedApp"
first=$(k get xapp -A -o jsonpath='{.items[0].metadata.namespace}/{.items[0].metadata.name}')
k -n "${first%%/*}" get xapp "${first##*/}" -o jsonpath='{.status}' | python3 -m json.tool

cat <<TXT

The cluster, the controllers and the operator are still running: export KUBECONFIG=$KUBECONFIG_FILE
DNS: dig @127.0.0.1 -p $DNS_EXTERNAL_PORT <host> (external tier), -p $DNS_INTERNAL_PORT (internal tier)
Other setups: make cluster-down; SAMPLE=<one of: $(ls "$ROOT/config/samples" | tr '\n' ' ')> make demo
Stop everything with: make cluster-down
TXT
