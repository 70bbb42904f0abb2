#!/usr/bin/env bash
# hack/stack-down.sh COMPONENT...: stop components started by hack/stack-up.sh (cert-manager,
# metallb, dns, oidc, traefik, bgp), leaving the control plane running. hack/cluster-down.sh stops them all
# anyway. Used by tests that must run without one of them (MetalLB claims every classless
# LoadBalancer Service, so a test that plays another load balancer stops it first).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=$(cd "${CLUSTER_DIR:-$REPO_ROOT/.cluster}" && pwd)
RUN=$CLUSTER_DIR/run
LOG_PREFIX=stack-down
# shellcheck source=hack/lib.sh
source "$REPO_ROOT/hack/lib.sh"

stop() {
	local pid
	pid=$(pid_of "$1")
	is_ours "$pid" || return 0
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do is_ours "$pid" || break; sleep 0.1; done
	if is_ours "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
	rm -f "$RUN/$1.pid"
	log "stopped $1"
}

for c in "$@"; do
	case $c in
	cert-manager | metallb) stop "$c" ;;
	dns) for t in external internal; do stop "external-dns-$t"; stop "named-$t"; done ;;
	oidc | traefik-external | traefik-internal) stop "$c" ;;
	traefik) for t in external internal; do stop "traefik-$t"; done ;;
	bgp) stop metallb-speaker; stop bgp-router ;;
	*) die "unknown component $c (cert-manager, metallb, dns, oidc, traefik, bgp)" ;;
	esac
done
