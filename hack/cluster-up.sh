#!/usr/bin/env bash
# hack/cluster-up.sh: start a real local Kubernetes control plane for the integration
# tests and `make demo`: etcd, kube-apiserver and kube-controller-manager, all from the
# one binary built by `make controlplane` (see hack/controlplane.mk and
# shared/design/testing.md). Nothing runs pods; there is no kubelet or scheduler.
#
# Run it through `make cluster-up`, which builds the binary first and exports
# CONTROLPLANE_BIN. On success the admin kubeconfig is $CLUSTER_DIR/kubeconfig.
#
# Idempotent: if the cluster recorded in $CLUSTER_DIR is up and ready it does nothing.
# If a previous cluster died or was killed (a crashed test run, kill -9), its leftovers
# (processes, tmpfs data, pid files) are cleaned up by cluster-down.sh before starting.
#
# Environment (all optional):
#   CONTROLPLANE_BIN        the gatehouse-controlplane binary (required; make sets it)
#   CLUSTER_DIR             state directory (default: <repo>/.cluster)
#   CLUSTER_TMPFS           where etcd's data lives (default /dev/shm, else $TMPDIR or /tmp)
#   CLUSTER_START_TIMEOUT   seconds to wait for each component (default 90)
#   CLUSTER_START_ATTEMPTS  tries, in case a freshly picked port was taken (default 2)
#   CLUSTER_WATCH_PID       if set, a watchdog runs cluster-down.sh once that pid exits,
#                           so a killed test runner does not leave the cluster behind
#   CRDS_BEFORE_KCM         1 (default): apply every CRD in tests/crds/ and config/crd/ and
#                           wait for Established BEFORE starting kube-controller-manager,
#                           because its garbage collector only re-discovers resource types
#                           every 30 s (a constant in kube-controller-manager); 0 to skip
#   KCM_CONTROLLERS         default garbage-collector-controller,namespace-controller
#   ETCD_EXTRA_ARGS, APISERVER_EXTRA_ARGS, KCM_EXTRA_ARGS
#                           extra flags (split on spaces) appended to each component
#   KUBECTL                 kubectl to use (default: kubectl)
set -euo pipefail
set +m # no job control: background children must not get their own process group,
       # so that `setsid` below does not fork and $! is the component's own pid

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$REPO_ROOT/.cluster}
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd) # absolute: it is also the processes' marker
export CLUSTER_DIR

BIN=${CONTROLPLANE_BIN:-}
KUBECTL=${KUBECTL:-kubectl}
TIMEOUT=${CLUSTER_START_TIMEOUT:-90}
ATTEMPTS=${CLUSTER_START_ATTEMPTS:-2}
KCM_CONTROLLERS=${KCM_CONTROLLERS:-garbage-collector-controller,namespace-controller}

PKI=$CLUSTER_DIR/pki
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
ADMIN_KUBECONFIG=$PKI/admin.kubeconfig # used while starting; copied to kubeconfig when ready
COMPONENTS=(etcd kube-apiserver kube-controller-manager)

LOG_PREFIX=cluster-up
# shellcheck source=hack/lib.sh
source "$REPO_ROOT/hack/lib.sh"

# phase NAME: note how long the step that just finished took (for the start-up summary).
PHASES=() PHASE_T0=${EPOCHREALTIME/,/.}
phase() {
	local now=${EPOCHREALTIME/,/.}
	PHASES+=("$1 $(awk -v a="$PHASE_T0" -v b="$now" 'BEGIN { printf "%.1fs", b - a }')")
	PHASE_T0=$now
}

[[ -n $BIN && -x $BIN ]] || die "CONTROLPLANE_BIN is not set to an executable; use 'make cluster-up', which builds it"
command -v "$KUBECTL" >/dev/null || die "kubectl not found"
command -v openssl >/dev/null || die "openssl not found"

# Serialise cluster-up/cluster-down on this state dir (parallel test binaries, two
# terminals). cluster-down.sh, when called from here, is told we already hold the lock.
exec 9>"$CLUSTER_DIR/.lock"
flock -w 600 9 || die "timed out waiting for the lock on $CLUSTER_DIR"
export GATEHOUSE_CLUSTER_LOCKED=1

# apiserver_ready: /readyz answers ok to the admin client certificate.
apiserver_ready() {
	[[ -f $CLUSTER_DIR/cluster.env ]] || return 1
	local API_PORT
	API_PORT=$(sed -n 's/^API_PORT=//p' "$CLUSTER_DIR/cluster.env")
	[[ -n $API_PORT ]] || return 1
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# The cluster is "up" when every component recorded in run/ is alive and ours, the
# apiserver is ready and the final kubeconfig exists.
cluster_healthy() {
	local c
	for c in "${COMPONENTS[@]}"; do is_ours "$(pid_of "$c")" || return 1; done
	[[ -f $CLUSTER_DIR/kubeconfig ]] && apiserver_ready
}

# make_pki: a throwaway CA (EC P-256, quick to generate), the apiserver's serving cert,
# the admin client cert (O=system:masters: all rights under RBAC), and the key pair the
# apiserver signs and verifies service-account tokens with. Made fresh for every cluster.
make_pki() {
	rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
	local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
	openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=gatehouse-local-ca" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null || return 1
	# sign NAME SUBJECT EXTENSIONS
	sign() {
		openssl req -new "${ec[@]}" -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
			openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
				-set_serial "0x$(openssl rand -hex 16)" -days 3650 -out "$PKI/$1.crt" \
				-extfile <(printf '%s\n' "$3" "keyUsage=critical,digitalSignature") 2>/dev/null &&
			rm -f "$PKI/$1.csr"
	}
	# Names a client might use for the apiserver: loopback, plus the in-cluster service
	# names and the first IP of the service range (the `kubernetes` service).
	sign apiserver "/CN=kube-apiserver" "$(printf '%s' \
		"subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes," \
		"DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
		$'\nextendedKeyUsage=serverAuth')" || return 1
	sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth" || return 1
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null &&
		openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE PORT: an admin kubeconfig with the certs embedded, so it can be
# copied anywhere (e.g. into a test's temp dir) and still work.
write_kubeconfig() {
	local file=$1 port=$2
	rm -f "$file"
	"$KUBECTL" config --kubeconfig="$file" set-cluster gatehouse-local --embed-certs=true \
		--server="https://127.0.0.1:$port" --certificate-authority="$PKI/ca.crt" >/dev/null &&
		"$KUBECTL" config --kubeconfig="$file" set-credentials gatehouse-admin --embed-certs=true \
			--client-certificate="$PKI/admin.crt" --client-key="$PKI/admin.key" >/dev/null &&
		"$KUBECTL" config --kubeconfig="$file" set-context gatehouse-local \
			--cluster=gatehouse-local --user=gatehouse-admin >/dev/null &&
		"$KUBECTL" config --kubeconfig="$file" use-context gatehouse-local >/dev/null
}

# crd_files: the CRDs to install before the controller manager starts: our stand-ins for
# third-party kinds and, once it exists, the operator's own config/crd/ (only files that
# are CRDs: kustomization.yaml or patches there are skipped).
crd_files() {
	local d
	for d in "$REPO_ROOT/tests/crds" "$REPO_ROOT/config/crd"; do
		[[ -d $d ]] || continue
		find "$d" -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 |
			xargs -0r grep -l '^kind: CustomResourceDefinition' | sort
	done
}

# start_cluster: one attempt at bringing everything up. Returns non-zero on failure,
# leaving whatever it started for the caller to clean up.
start_cluster() {
	local ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT data pid
	mkdir -p "$RUN" "$LOGS"
	local c
	for c in "${COMPONENTS[@]}"; do : >"$LOGS/$c.log"; done

	# Free loopback ports, chosen now (never fixed, so several clusters can coexist).
	read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT < <("$BIN" free-ports 4) || return 1
	[[ -n $KCM_PORT ]] || return 1
	cat >"$CLUSTER_DIR/cluster.env" <<-EOF
		# Written by hack/cluster-up.sh; sourceable from a shell.
		CLUSTER_DIR=$CLUSTER_DIR
		KUBECONFIG=$CLUSTER_DIR/kubeconfig
		APISERVER_URL=https://127.0.0.1:$API_PORT
		ETCD_URL=http://127.0.0.1:$ETCD_PORT
		ETCD_PORT=$ETCD_PORT
		ETCD_PEER_PORT=$ETCD_PEER_PORT
		API_PORT=$API_PORT
		KCM_PORT=$KCM_PORT
	EOF

	PHASES=() PHASE_T0=${EPOCHREALTIME/,/.}
	make_pki || { log "making certificates failed"; return 1; }
	write_kubeconfig "$ADMIN_KUBECONFIG" "$API_PORT" || return 1
	phase certs

	# etcd's data on tmpfs: fast, and nothing is worth keeping across clusters. The path
	# is derived from CLUSTER_DIR so cluster-down can always find it.
	local tmpfs=${CLUSTER_TMPFS:-/dev/shm}
	[[ -d $tmpfs && -w $tmpfs ]] || tmpfs=${TMPDIR:-/tmp}
	data=$tmpfs/gatehouse-etcd-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-12)
	echo "$data" >"$RUN/etcd-data-dir"
	rm -rf "$data" && mkdir -p "$data" && chmod 700 "$data"

	# --unsafe-no-fsync: the data is on tmpfs and thrown away anyway (envtest does the same).
	# shellcheck disable=SC2086 # *_EXTRA_ARGS are meant to be split
	launch etcd "$BIN" etcd --name=gatehouse --data-dir="$data" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster="gatehouse=http://127.0.0.1:$ETCD_PEER_PORT" \
		--unsafe-no-fsync --log-level=warn ${ETCD_EXTRA_ARGS:-}
	wait_for etcd "$(pid_of etcd)" curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" || return 1
	phase etcd

	# --endpoint-reconciler-type=none: the apiserver would otherwise publish its address
	# (127.0.0.1) as the `kubernetes` service's endpoints, and loopback endpoints are
	# invalid. There are no pods here to use that service anyway.
	# shellcheck disable=SC2086
	launch kube-apiserver "$BIN" kube-apiserver \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--authorization-mode=RBAC \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112 \
		--endpoint-reconciler-type=none \
		--allow-privileged=true \
		${APISERVER_EXTRA_ARGS:-}
	pid=$(pid_of kube-apiserver)
	wait_for kube-apiserver "$pid" apiserver_ready || return 1
	# /readyz does not cover the `default` namespace, which a post-start hook creates.
	wait_for kube-apiserver "$pid" "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" get namespace default || return 1
	phase kube-apiserver

	if [[ ${CRDS_BEFORE_KCM:-1} != 0 ]]; then
		local files=() f
		while IFS= read -r f; do files+=("$f"); done < <(crd_files)
		if ((${#files[@]})); then
			local args=()
			for f in "${files[@]}"; do args+=(-f "$f"); done
			# Server-side apply: no last-applied annotation, which big CRDs would overflow.
			"$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" apply --server-side --force-conflicts \
				--field-manager=gatehouse-cluster-up "${args[@]}" >/dev/null || { log "applying CRDs failed"; return 1; }
			"$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" wait --for=condition=Established \
				--timeout="${TIMEOUT}s" "${args[@]}" >/dev/null || { log "CRDs not Established"; return 1; }
			log "applied ${#files[@]} CRD files"
		fi
		phase crds
	fi

	# The controller manager runs as the admin (system:masters) through one client:
	# --use-service-account-credentials=false means it does not need the token
	# controllers to mint per-controller service-account tokens first. No leader
	# election: there is only one, and electing costs start-up time. Higher client QPS
	# than the default 20 so that garbage collection keeps up with the benchmarks.
	# Its own HTTPS endpoint (/healthz, /metrics) authenticates with our CA directly
	# (--client-ca-file, --authentication-skip-lookup): looking the CAs up in the
	# apiserver's extension-apiserver-authentication ConfigMap would log an error every
	# few seconds, as we run no front proxy and so have no request-header CA.
	# shellcheck disable=SC2086
	launch kube-controller-manager "$BIN" kube-controller-manager \
		--kubeconfig="$ADMIN_KUBECONFIG" \
		--authentication-kubeconfig="$ADMIN_KUBECONFIG" \
		--authentication-skip-lookup --client-ca-file="$PKI/ca.crt" \
		--authorization-kubeconfig="$ADMIN_KUBECONFIG" \
		--bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$CLUSTER_DIR/kcm" \
		--controllers="$KCM_CONTROLLERS" \
		--use-service-account-credentials=false \
		--leader-elect=false \
		--kube-api-qps=100 --kube-api-burst=200 \
		${KCM_EXTRA_ARGS:-}
	pid=$(pid_of kube-controller-manager)
	wait_for kube-controller-manager "$pid" \
		curl -fsSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz" || return 1
	# Until its informers have synced, the garbage collector does not act; wait for that
	# so a test's first deletion is collected promptly. Its log line is the only signal.
	if [[ ,$KCM_CONTROLLERS, == *,garbage-collector-controller,* ]]; then
		wait_for kube-controller-manager "$pid" \
			grep -qi "all resource monitors have synced" "$LOGS/kube-controller-manager.log" || return 1
	fi

	phase kube-controller-manager

	# Publish the kubeconfig last: its presence means "ready".
	cp "$ADMIN_KUBECONFIG" "$CLUSTER_DIR/kubeconfig.tmp" && mv -f "$CLUSTER_DIR/kubeconfig.tmp" "$CLUSTER_DIR/kubeconfig"
}

# start_watchdog: if CLUSTER_WATCH_PID is set, a small detached loop runs cluster-down.sh
# once that process is gone. Replaces an earlier watchdog.
start_watchdog() {
	[[ -n ${CLUSTER_WATCH_PID:-} ]] || return 0
	local old
	old=$(pid_of watchdog)
	if is_ours "$old"; then kill -- "-$old" 2>/dev/null || true; fi
	kill -0 "$CLUSTER_WATCH_PID" 2>/dev/null || die "CLUSTER_WATCH_PID=$CLUSTER_WATCH_PID is not running"
	# shellcheck disable=SC2016 # expanded by the inner bash
	GATEHOUSE_CLUSTER_LOCKED="" launch watchdog bash -c \
		'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2"' \
		watchdog "$CLUSTER_WATCH_PID" "$REPO_ROOT/hack/cluster-down.sh"
	log "watchdog: cluster-down when pid $CLUSTER_WATCH_PID exits"
}

if cluster_healthy; then
	log "already up ($CLUSTER_DIR/kubeconfig)"
	start_watchdog
	exit 0
fi

started=$SECONDS
for ((attempt = 1; ; attempt++)); do
	# Whatever is there is stale (dead pids, a half-started cluster, tmpfs data): clear it.
	"$REPO_ROOT/hack/cluster-down.sh" --quiet
	if start_cluster; then break; fi
	# Only a port taken between choosing it and binding it is worth another try; any
	# other failure would just fail again, slowly.
	if ((attempt >= ATTEMPTS)) || ! grep -qs "address already in use" "$LOGS"/*.log; then
		"$REPO_ROOT/hack/cluster-down.sh" --quiet
		die "failed (attempt $attempt); logs are in $LOGS"
	fi
	log "attempt $attempt failed: a port was taken; retrying with new ports"
done
start_watchdog

source_env() { sed -n "s/^$1=//p" "$CLUSTER_DIR/cluster.env"; }
summary=$(IFS=,; echo "${PHASES[*]}")
log "up in $((SECONDS - started))s (${summary//,/, }): apiserver $(source_env APISERVER_URL), kubeconfig $CLUSTER_DIR/kubeconfig"
