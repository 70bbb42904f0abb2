#!/usr/bin/env bash
# hack/stack-up.sh: start the real controllers that consume Gatehouse's children, next to
# the local control plane started by hack/cluster-up.sh, as host processes:
#
#   cert-manager   our own small main over cert-manager's controller packages
#                  (tests/stack/cert-manager), with one CA made here: every ClusterIssuer
#                  named in tests/stack/issuers.txt is a CA issuer over it (ACME cannot
#                  run on one machine; the name is the one the sample sets use)
#   metallb        MetalLB's controller (no speaker: nothing announces on this machine)
#   named-<tier>   BIND9, one server per ingress tier (external, internal) on a loopback
#                  port, serving that tier's zones from tests/stack/zones.txt: split
#                  horizon, one name can resolve differently on each tier
#   external-dns-<tier>  one external-dns per tier (label gatehouse.dev/dns-tier=<tier>),
#                  rfc2136 provider into that tier's named
#
# Every process carries the cluster's marker, so hack/cluster-down.sh stops them with the
# control plane. Idempotent per component: what is running and ours is left alone, so
# `stack-up.sh metallb` after `stack-down.sh metallb` starts only MetalLB again.
# $CLUSTER_DIR/stack.env records what tests need (DNS ports, the CA, the TSIG key).
#
#   oidc           a mock OIDC issuer (tests/stack/mockoidc) for the OAuth2 Proxy pods
#   traefik-<tier> Traefik, one per tier, serving that tier's IngressClass on ports 80/443
#                  of a loopback address of its own (see start_traefik)
#   bgp            (only when asked for) a BGP router (tests/stack/gobgp, GoBGP v3 as a
#                  library) and MetalLB's speaker in its native BGP mode for the node,
#                  announcing LoadBalancer addresses to that router (see start_bgp)
#
# Usage: stack-up.sh [COMPONENT...]   (default: all; components: cert-manager metallb dns
# oidc traefik; bgp only by name)
# Environment: CERT_MANAGER_BIN METALLB_BIN EXTERNAL_DNS_BIN MOCKOIDC_BIN TRAEFIK_BIN
# METALLB_SPEAKER_BIN GOBGP_BIN CONTROLPLANE_BIN (make sets them), CLUSTER_DIR, STACK_START_TIMEOUT (seconds per
# component, default 120), KUBECTL; for traefik TRAEFIK_<TIER>_CLASS, TRAEFIK_<TIER>_ADDR,
# TRAEFIK_HOSTS_FILE; for bgp BGP_ROUTER_ADDR, BGP_ROUTER_ASN, BGP_SPEAKER_ASN, BGP_NODE_NAME.
set -euo pipefail
set +m # as in cluster-up.sh: $! must be the component's own pid

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=$(cd "${CLUSTER_DIR:-$REPO_ROOT/.cluster}" && pwd)
export CLUSTER_DIR
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
STACK=$CLUSTER_DIR/stack
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
TIMEOUT=${STACK_START_TIMEOUT:-120}
KUBECTL=${KUBECTL:-kubectl}
LOG_PREFIX=stack-up
# shellcheck source=hack/lib.sh
source "$REPO_ROOT/hack/lib.sh"

# The namespaces the controllers keep their own state in.
CERT_MANAGER_NS=cert-manager
METALLB_NS=metallb-system
CA_SECRET=gatehouse-test-ca
TIERS=(external internal)

[[ -f $KUBECONFIG_FILE ]] || die "no cluster at $CLUSTER_DIR: run hack/cluster-up.sh (make cluster-up) first"
mkdir -p "$RUN" "$LOGS" "$STACK"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
need_bin() { [[ -n ${!1:-} && -x ${!1} ]] || die "$1 is not set to an executable; run through make (make stack-up), which builds it"; }
running() { is_ours "$(pid_of "$1")"; }
free_ports() {
	need_bin CONTROLPLANE_BIN
	"$CONTROLPLANE_BIN" free-ports "$1"
}
# env_set KEY VALUE: record KEY=VALUE in stack.env (replacing an earlier value).
env_set() {
	local f=$CLUSTER_DIR/stack.env
	touch "$f"
	grep -v "^$1=" "$f" >"$f.tmp" || true
	echo "$1=$2" >>"$f.tmp"
	mv -f "$f.tmp" "$f"
}
env_get() { sed -n "s/^$1=//p" "$CLUSTER_DIR/stack.env" 2>/dev/null; }
# log_restart FILE: a component (re)starts; its log keeps what came before (a test that
# paused it may need it), with a line saying when it started again.
log_restart() { echo "=== stack-up: starting at $(date -u +%FT%TZ) ===" >>"$LOGS/$1"; }
namespace() { k create namespace "$1" --dry-run=client -o yaml | k apply --server-side --field-manager=gatehouse-stack -f - >/dev/null; }

# --- cert-manager --------------------------------------------------------------------

# The CA lives as long as the cluster; a restarted cert-manager keeps issuing from it.
make_ca() {
	[[ -f $STACK/ca.crt && -f $STACK/ca.key ]] && return 0
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj "/CN=Gatehouse test CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$STACK/ca.key.tmp" -out "$STACK/ca.crt.tmp" 2>/dev/null
	mv -f "$STACK/ca.key.tmp" "$STACK/ca.key" && mv -f "$STACK/ca.crt.tmp" "$STACK/ca.crt"
}

issuers_ready() {
	local name
	while read -r name; do
		[[ $(k get clusterissuer "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] || return 1
	done < <(issuer_names)
}
issuer_names() { grep -Ev '^[[:space:]]*(#|$)' "$REPO_ROOT/tests/stack/issuers.txt"; }

start_cert_manager() {
	need_bin CERT_MANAGER_BIN
	make_ca
	namespace "$CERT_MANAGER_NS"
	k -n "$CERT_MANAGER_NS" create secret tls "$CA_SECRET" --cert="$STACK/ca.crt" --key="$STACK/ca.key" \
		--dry-run=client -o yaml | k apply --server-side --field-manager=gatehouse-stack -f - >/dev/null
	local name
	while read -r name; do
		k apply --server-side --field-manager=gatehouse-stack -f - >/dev/null <<-EOF
			apiVersion: cert-manager.io/v1
			kind: ClusterIssuer
			metadata:
			  name: $name
			  annotations:
			    gatehouse.dev/test-stack: "a CA issuer standing in for the issuer of this name (ACME cannot run on one machine)"
			spec:
			  ca:
			    secretName: $CA_SECRET
		EOF
	done < <(issuer_names)
	env_set CA_CERT "$STACK/ca.crt"
	if ! running cert-manager; then
		log_restart "cert-manager.log"
		launch cert-manager "$CERT_MANAGER_BIN" --kubeconfig="$KUBECONFIG_FILE" \
			--cluster-resource-namespace="$CERT_MANAGER_NS"
	fi
	wait_for cert-manager "$(pid_of cert-manager)" issuers_ready
	log "cert-manager: up, ClusterIssuers $(issuer_names | tr '\n' ' ')Ready (CA $STACK/ca.crt)"
}

# --- MetalLB -------------------------------------------------------------------------

start_metallb() {
	need_bin METALLB_BIN
	namespace "$METALLB_NS"
	if ! running metallb; then
		log_restart "metallb.log"
		local port
		port=$(free_ports 1)
		# --port: its metrics (it binds every interface; nothing here listens on it from
		# outside). No webhook, no cert rotation: the CRDs carry no conversion webhook.
		KUBECONFIG=$KUBECONFIG_FILE launch metallb "$METALLB_BIN" --namespace="$METALLB_NS" \
			--webhook-mode=disabled --disable-cert-rotation --port="$port" --log-level=info
		env_set METALLB_METRICS_PORT "$port"
	fi
	wait_for metallb "$(pid_of metallb)" curl -fsS --max-time 2 "http://127.0.0.1:$(env_get METALLB_METRICS_PORT)/metrics"
	log "metallb: up (pools from namespace $METALLB_NS)"
}

# --- BGP: a router, and MetalLB's speaker announcing to it ----------------------------

# The router (tests/stack/gobgp) listens on BGP_ROUTER_ADDR:179 (default: the node's
# address on the pod bridge, NODE_IP) as AS BGP_ROUTER_ASN (default 64512) and accepts a
# session from any address with AS BGP_SPEAKER_ASN (default 64513): a BGPPeer of
# myASN=$BGP_SPEAKER_ASN, peerASN=$BGP_ROUTER_ASN, peerAddress=$BGP_ROUTER_ADDR makes the
# speaker dial it. MetalLB's native BGP sends the local address of that TCP connection as
# the next hop: dialling the node's own address the source is that address, so routes
# arrive with next hop NODE_IP (dialling 127.0.0.31 they would carry 127.0.0.1). The router
# rewrites $STACK/bgp-rib.json (BGP_RIB_FILE in stack.env) after every change:
# {"peers":[{address,asn,state}],"routes":[{prefix,nextHop,peer,asPath,communities}]}.
#
# The speaker runs as a host process for the node (BGP_NODE_NAME, default the cluster's
# NODE_NAME): memberlist off (no METALLB_ML_* set: it then assumes a speaker on every
# node, true here), metrics on 127.0.0.1. At start it reads its own Pod (the owner of the
# ServiceBGPStatus/ServiceL2Status objects it writes) and exits when there is none, so a
# placeholder Pod is created that no scheduler picks up (schedulerName of no scheduler).
BGP_SPEAKER_POD=metallb-speaker
start_bgp() {
	need_bin GOBGP_BIN
	need_bin METALLB_SPEAKER_BIN
	local node addr router_asn speaker_asn port
	node=${BGP_NODE_NAME:-$(sed -n 's/^NODE_NAME=//p' "$CLUSTER_DIR/cluster.env" 2>/dev/null)}
	[[ -n $node ]] || die "bgp needs a node: a cluster with CLUSTER_NODE=1, or BGP_NODE_NAME naming a Node object"
	addr=${BGP_ROUTER_ADDR:-$(sed -n 's/^NODE_IP=//p' "$CLUSTER_DIR/cluster.env" 2>/dev/null)}
	addr=${addr:-127.0.0.31}
	router_asn=${BGP_ROUTER_ASN:-64512}
	speaker_asn=${BGP_SPEAKER_ASN:-64513}
	namespace "$METALLB_NS"
	if ! running bgp-router; then
		log_restart "bgp-router.log"
		rm -f "$STACK/bgp-rib.json"
		launch bgp-router "$GOBGP_BIN" --listen-address="$addr" --listen-port=179 \
			--asn="$router_asn" --peer-asn="$speaker_asn" --rib-file="$STACK/bgp-rib.json"
		env_set BGP_ROUTER_ADDR "$addr"
		env_set BGP_ROUTER_ASN "$router_asn"
		env_set BGP_SPEAKER_ASN "$speaker_asn"
		env_set BGP_RIB_FILE "$STACK/bgp-rib.json"
	fi
	wait_for bgp-router "$(pid_of bgp-router)" test -s "$STACK/bgp-rib.json"
	# Its own ServiceAccount (the default one is made by a controller a cluster without a
	# node does not run).
	k apply --server-side --field-manager=gatehouse-stack -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: ServiceAccount
		metadata:
		  name: $BGP_SPEAKER_POD
		  namespace: $METALLB_NS
		---
		apiVersion: v1
		kind: Pod
		metadata:
		  name: $BGP_SPEAKER_POD
		  namespace: $METALLB_NS
		  annotations:
		    gatehouse.dev/test-stack: "placeholder: the speaker runs as a host process for node $node; no scheduler picks this pod"
		spec:
		  schedulerName: gatehouse-host-process
		  serviceAccountName: $BGP_SPEAKER_POD
		  automountServiceAccountToken: false
		  containers:
		  - name: speaker
		    image: gatehouse.dev/host-process:none
		    imagePullPolicy: Never
	EOF
	if ! running metallb-speaker; then
		log_restart "metallb-speaker.log"
		port=$(free_ports 1)
		KUBECONFIG=$KUBECONFIG_FILE METALLB_NODE_NAME=$node METALLB_POD_NAME=$BGP_SPEAKER_POD \
			METALLB_HOST=127.0.0.1 launch metallb-speaker "$METALLB_SPEAKER_BIN" \
			--namespace="$METALLB_NS" --port="$port" --log-level=info
		env_set METALLB_SPEAKER_METRICS_PORT "$port"
	fi
	wait_for metallb-speaker "$(pid_of metallb-speaker)" curl -fsS --max-time 2 "http://127.0.0.1:$(env_get METALLB_SPEAKER_METRICS_PORT)/metrics"
	log "bgp: router AS $router_asn on $addr:179 (routes in $STACK/bgp-rib.json), MetalLB speaker for node $node (a BGPPeer myASN $speaker_asn, peerASN $router_asn, peerAddress $addr)"
}

# --- BIND9 and external-dns ------------------------------------------------------------

tier_zones() { awk -v t="$1" '$1 == t { print $2 }' "$REPO_ROOT/tests/stack/zones.txt"; }

# write_named TIER PORT KEYNAME SECRET: named's configuration and empty zones for a tier.
write_named() {
	local tier=$1 port=$2 keyname=$3 secret=$4 dir=$STACK/named-$1 zone
	rm -rf "$dir" && mkdir -p "$dir"
	{
		cat <<-EOF
			options {
			  directory "$dir";
			  pid-file "$dir/named.pid";
			  session-keyfile "$dir/session.key";
			  listen-on port $port { 127.0.0.1; };
			  listen-on-v6 { none; };
			  recursion no;
			  allow-query { 127.0.0.1; };
			  dnssec-validation no;
			  notify no;
			};
			controls { };
			key "$keyname" { algorithm hmac-sha256; secret "$secret"; };
		EOF
		while read -r zone; do
			cat <<-EOF
				zone "$zone" {
				  type primary;
				  file "$dir/$zone.zone";
				  allow-update { key "$keyname"; };
				  allow-transfer { key "$keyname"; };
				};
			EOF
			cat >"$dir/$zone.zone" <<-EOF
				\$TTL 60
				@ IN SOA ns.$zone. hostmaster.$zone. 1 60 60 600 60
				@ IN NS ns.$zone.
				ns IN A 127.0.0.1
			EOF
		done < <(tier_zones "$tier")
	} >"$dir/named.conf"
	named-checkconf "$dir/named.conf" >/dev/null || die "named-checkconf failed for $dir/named.conf"
}

zones_answer() {
	local port=$1 tier=$2 zone
	while read -r zone; do
		dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" SOA "$zone" | grep -q . || return 1
	done < <(tier_zones "$tier")
}

start_dns() {
	need_bin EXTERNAL_DNS_BIN
	command -v named >/dev/null && command -v dig >/dev/null || die "named/dig not found: make bind9 installs them"
	local tier port metrics keyname secret zone zargs
	for tier in "${TIERS[@]}"; do
		keyname=gatehouse-$tier
		if ! running "named-$tier"; then
			read -r port metrics < <(free_ports 2)
			secret=$(openssl rand -base64 32)
			write_named "$tier" "$port" "$keyname" "$secret"
			log_restart "named-$tier.log"
			launch "named-$tier" named -g -c "$STACK/named-$tier/named.conf"
			env_set "DNS_${tier^^}_PORT" "$port"
			env_set "DNS_${tier^^}_TSIG_SECRET" "$secret"
			env_set "DNS_${tier^^}_METRICS_PORT" "$metrics"
			# A new named has empty zones: a running external-dns would wrongly believe
			# its records are still there until its next full sync, so restart it too.
			if running "external-dns-$tier"; then kill -- "-$(pid_of "external-dns-$tier")" 2>/dev/null || true; fi
		fi
		port=$(env_get "DNS_${tier^^}_PORT")
		wait_for "named-$tier" "$(pid_of "named-$tier")" zones_answer "$port" "$tier"
		env_set "DNS_${tier^^}_TSIG_KEY" "$keyname"
		if ! running "external-dns-$tier"; then
			zargs=()
			while read -r zone; do zargs+=(--rfc2136-zone="$zone" --domain-filter="$zone"); done < <(tier_zones "$tier")
			log_restart "external-dns-$tier.log"
			# --policy=sync with the TXT registry: records are removed when their
			# DNSEndpoint goes, and only records this instance owns are ever touched.
			# --events + a short interval: a change is published within seconds.
			launch "external-dns-$tier" "$EXTERNAL_DNS_BIN" --kubeconfig="$KUBECONFIG_FILE" \
				--source=crd --crd-source-apiversion=externaldns.k8s.io/v1alpha1 --crd-source-kind=DNSEndpoint \
				--label-filter="gatehouse.dev/dns-tier=$tier" \
				--provider=rfc2136 --rfc2136-host=127.0.0.1 --rfc2136-port="$port" "${zargs[@]}" \
				--rfc2136-tsig-keyname="$keyname" --rfc2136-tsig-secret="$(env_get "DNS_${tier^^}_TSIG_SECRET")" \
				--rfc2136-tsig-secret-alg=hmac-sha256 --rfc2136-axfr \
				--policy=sync --registry=txt --txt-owner-id="gatehouse-$tier" \
				--interval=2s --events --metrics-address="127.0.0.1:$(env_get "DNS_${tier^^}_METRICS_PORT")"
		fi
		wait_for "external-dns-$tier" "$(pid_of "external-dns-$tier")" \
			curl -fsS --max-time 2 "http://127.0.0.1:$(env_get "DNS_${tier^^}_METRICS_PORT")/healthz"
		log "dns $tier: named on 127.0.0.1:$port ($(tier_zones "$tier" | tr '\n' ' ')), external-dns publishing DNSEndpoints labelled gatehouse.dev/dns-tier=$tier"
	done
}

# --- The sign-in issuer --------------------------------------------------------------

# A mock OIDC issuer (tests/stack/mockoidc) for the OAuth2 Proxy the sample sets run as a
# pod. It listens on the node's pod bridge address (cluster.env NODE_IP), the one address
# both the pod (token exchange) and a client on this machine (the browser's authorize step)
# reach; on loopback without a node. Fixed client credentials, recorded in stack.env.
start_oidc() {
	need_bin MOCKOIDC_BIN
	local host port
	host=$(sed -n 's/^NODE_IP=//p' "$CLUSTER_DIR/cluster.env" 2>/dev/null)
	host=${host:-127.0.0.1}
	if ! running oidc; then
		port=$(free_ports 1)
		log_restart "oidc.log"
		: >"$STACK/oidc.json"
		# The ready line goes to its own file (stdout); the log gets stderr.
		(
			for fd in "/proc/$BASHPID/fd"/*; do
				fd=${fd##*/}
				if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
			done
			exec env GATEHOUSE_CLUSTER_DIR="$CLUSTER_DIR" setsid "$MOCKOIDC_BIN" --addr="$host:$port" \
				--client-id=gatehouse-e2e --client-secret="$(openssl rand -hex 16)" \
				</dev/null >"$STACK/oidc.json" 2>>"$LOGS/oidc.log"
		) &
		echo $! >"$RUN/oidc.pid"
	fi
	wait_for oidc "$(pid_of oidc)" grep -q issuer "$STACK/oidc.json"
	env_set OIDC_ISSUER "$(jq -r .issuer "$STACK/oidc.json")"
	env_set OIDC_CLIENT_ID "$(jq -r .clientId "$STACK/oidc.json")"
	env_set OIDC_CLIENT_SECRET "$(jq -r .clientSecret "$STACK/oidc.json")"
	log "oidc: mock issuer $(env_get OIDC_ISSUER) (client $(env_get OIDC_CLIENT_ID))"
}

# --- Traefik, one per ingress tier ---------------------------------------------------

# Each tier's Traefik serves that tier's IngressClass (TRAEFIK_<TIER>_CLASS, default
# gatehouse-<tier>) with all three Kubernetes providers: kubernetesingress for classes of
# controller traefik.io/ingress-controller, kubernetesingressnginx for classes of controller
# k8s.io/ingress-nginx-<tier> (one controller value per tier, as two ingress-nginx releases
# in one cluster have; the NGINX provider selects classes by controller value), kubernetescrd
# for the Middlewares, kubernetesgateway for the Gateways of the GatewayClasses labelled
# gatehouse.dev/test-tier=<tier> (controller traefik.io/gateway-controller; a Gateway
# listener binds the entry point of its port: 80 web, 443 websecure). Entry points web and websecure on ports 80 and 443 of a loopback
# address of the tier's own (TRAEFIK_<TIER>_ADDR, default 127.0.0.21 / 127.0.0.22), so
# redirects and the sign-in flow keep their default ports; websecure has no TLS of its own
# (as in seed 001): routers get TLS from the Ingresses. Server-side calls (forward auth to
# the OAuth2 Proxy) resolve names through TRAEFIK_HOSTS_FILE, bind-mounted over /etc/hosts
# in the process's own mount namespace (the cluster DNS the seeds point at the LAN
# resolver is not here), and trust the stack's CA (SSL_CERT_FILE). A forward-auth call to
# the OAuth2 Proxy comes back in through a Traefik entry point (the proxy is an app behind
# the same tiers), so the entry points trust X-Forwarded-* from loopback, where the Traefiks
# are: otherwise the second hop strips X-Forwarded-Uri/Host and the proxy would send users
# back to its own host after sign-in (docs/api.md, "Sign-in"). Restarted when its class,
# address or hosts change.
traefik_signature() { # TIER CLASS ADDR HOSTSFILE
	{ echo "$1 $2 $3 gateway-provider"; cat "$4" 2>/dev/null; } | sha256sum | cut -c1-16
}

start_traefik() {
	need_bin TRAEFIK_BIN
	local tier class addr hosts sig ping var
	[[ -f $STACK/ca.crt ]] || die "traefik needs the stack's CA: start cert-manager first"
	for tier in "${TIERS[@]}"; do
		var=TRAEFIK_${tier^^}_CLASS
		class=${!var:-gatehouse-$tier}
		var=TRAEFIK_${tier^^}_ADDR
		addr=${!var:-$([[ $tier == external ]] && echo 127.0.0.21 || echo 127.0.0.22)}
		hosts=$STACK/traefik-$tier.hosts
		{
			echo "127.0.0.1 localhost"
			[[ -z ${TRAEFIK_HOSTS_FILE:-} ]] || cat "$TRAEFIK_HOSTS_FILE"
		} >"$hosts.new"
		sig=$(traefik_signature "$tier" "$class" "$addr" "$hosts.new")
		if running "traefik-$tier" && [[ $(env_get "TRAEFIK_${tier^^}_SIGNATURE") == "$sig" ]]; then
			rm -f "$hosts.new"
		else
			if running "traefik-$tier"; then
				"$REPO_ROOT/hack/stack-down.sh" "traefik-$tier" >/dev/null 2>&1 || true
			fi
			mv -f "$hosts.new" "$hosts"
			ping=$(free_ports 1)
			log_restart "traefik-$tier.log"
			KUBECONFIG=$KUBECONFIG_FILE SSL_CERT_FILE=$STACK/ca.crt launch "traefik-$tier" \
				unshare --mount --propagation private -- /bin/sh -ec 'mount --bind "$0" /etc/hosts; exec "$@"' "$hosts" \
				"$TRAEFIK_BIN" --global.checkNewVersion=false --global.sendAnonymousUsage=false \
				--log.level=INFO --accesslog=true \
				--entrypoints.web.address="$addr:80" --entrypoints.websecure.address="$addr:443" \
				--entrypoints.web.forwardedHeaders.trustedIPs=127.0.0.0/8 \
				--entrypoints.websecure.forwardedHeaders.trustedIPs=127.0.0.0/8 \
				--entrypoints.traefik.address="127.0.0.1:$ping" --ping=true --ping.entrypoint=traefik \
				--providers.kubernetesingress=true --providers.kubernetesingress.ingressClass="$class" \
				--providers.kubernetesingressnginx=true \
				--providers.kubernetesingressnginx.controllerClass="k8s.io/ingress-nginx-$tier" \
				--providers.kubernetesingressnginx.ingressClass="$class" \
				--providers.kubernetescrd=true \
				--providers.kubernetesgateway=true \
				--providers.kubernetesgateway.labelselector="gatehouse.dev/test-tier=$tier"
			env_set "TRAEFIK_${tier^^}_PING_PORT" "$ping"
			env_set "TRAEFIK_${tier^^}_SIGNATURE" "$sig"
		fi
		env_set "TRAEFIK_${tier^^}_ADDR" "$addr"
		env_set "TRAEFIK_${tier^^}_CLASS" "$class"
		wait_for "traefik-$tier" "$(pid_of "traefik-$tier")" \
			curl -fsS --max-time 2 "http://127.0.0.1:$(env_get "TRAEFIK_${tier^^}_PING_PORT")/ping"
		log "traefik $tier: IngressClass $class (Traefik, or NGINX annotations with controller k8s.io/ingress-nginx-$tier) on http://$addr:80 and https://$addr:443"
	done
}

components=("$@")
((${#components[@]})) || components=(cert-manager metallb dns oidc traefik)
started=$SECONDS
for c in "${components[@]}"; do
	case $c in
	cert-manager) start_cert_manager ;;
	metallb) start_metallb ;;
	dns) start_dns ;;
	oidc) start_oidc ;;
	traefik) start_traefik ;;
	bgp) start_bgp ;;
	*) die "unknown component $c (cert-manager, metallb, dns, oidc, traefik, bgp)" ;;
	esac
done
log "up in $((SECONDS - started))s; state in $CLUSTER_DIR/stack.env"
