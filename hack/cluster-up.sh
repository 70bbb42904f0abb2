#!/usr/bin/env bash
# hack/cluster-up.sh: start a real local Kubernetes control plane for the integration
# tests and `make demo`: etcd, kube-apiserver and kube-controller-manager, all from the
# one binary built by `make controlplane` (see hack/controlplane.mk and
# shared/design/testing.md). By default nothing runs pods: there is no kubelet or scheduler.
#
# CLUSTER_NODE=1 adds a real one-node cluster (shared/design/real-stack.md, "A real node on
# this machine"; the names and the teardown are in hack/node-lib.sh): a Linux bridge for pods
# ($NODE_BRIDGE, $NODE_IP/24, made before the API server, which binds and advertises that
# address so pods reach it), containerd with a config of its own under $CLUSTER_DIR/node
# (CNI bridge + host-local on that bridge, sandbox image gatehouse.local/pause:1 imported
# from $PAUSE_IMAGE_ARCHIVE, built by `make pause-image`), the kubelet, kube-scheduler and
# kube-proxy (iptables), and the controllers workloads need. It waits until the Node is
# Ready and untainted. One node per machine: a second one fails with the other's cluster dir.
# Needs root and `make node-deps`. More images: hack/node-import.sh ARCHIVE...
#
# The API server writes an audit log of every request (level Metadata, stages
# ResponseStarted and ResponseComplete) to $CLUSTER_DIR/logs/audit.log, emptied per cluster.
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
#   CLUSTER_NODE            1: also a real node (see above); default 0
#   PAUSE_IMAGE_ARCHIVE     the pause image's OCI archive (default: ask make, which builds
#                           it with `make pause-image`)
#   KCM_CONTROLLERS         default garbage-collector-controller,namespace-controller; with a
#                           node also the workload controllers (see NODE_KCM_CONTROLLERS)
#   ETCD_EXTRA_ARGS, APISERVER_EXTRA_ARGS, KCM_EXTRA_ARGS, KUBELET_EXTRA_ARGS,
#   SCHEDULER_EXTRA_ARGS, PROXY_EXTRA_ARGS
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
CLUSTER_NODE=${CLUSTER_NODE:-0}
[[ $CLUSTER_NODE == 0 || $CLUSTER_NODE == 1 ]] || { echo "cluster-up: CLUSTER_NODE must be 0 or 1" >&2; exit 1; }
# What a real cluster runs for workloads: Deployments make ReplicaSets make Pods, Services
# get EndpointSlices, every namespace gets its ServiceAccount, projected token and the
# kube-root-ca.crt ConfigMap, and the node-lifecycle controller removes the node's
# not-ready taint once the kubelet reports Ready.
NODE_KCM_CONTROLLERS=deployment-controller,replicaset-controller,endpointslice-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller,garbage-collector-controller,namespace-controller
if [[ $CLUSTER_NODE == 1 ]]; then
	KCM_CONTROLLERS=${KCM_CONTROLLERS:-$NODE_KCM_CONTROLLERS}
else
	KCM_CONTROLLERS=${KCM_CONTROLLERS:-garbage-collector-controller,namespace-controller}
fi

PKI=$CLUSTER_DIR/pki
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
ADMIN_KUBECONFIG=$PKI/admin.kubeconfig # used while starting; copied to kubeconfig when ready
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
NODE_COMPONENTS=(node-lock containerd kubelet kube-scheduler kube-proxy)
if [[ $CLUSTER_NODE == 1 ]]; then COMPONENTS+=("${NODE_COMPONENTS[@]}"); fi
NODE=$CLUSTER_DIR/node

LOG_PREFIX=cluster-up
# shellcheck source=hack/lib.sh
source "$REPO_ROOT/hack/lib.sh"
# shellcheck source=hack/node-lib.sh
source "$REPO_ROOT/hack/node-lib.sh"
# Where clients reach the API server: loopback, or with a node the bridge address pods use.
API_HOST=127.0.0.1
if [[ $CLUSTER_NODE == 1 ]]; then API_HOST=$NODE_IP; fi

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
if [[ $CLUSTER_NODE == 1 ]]; then
	(($(id -u) == 0)) || die "CLUSTER_NODE=1 needs root (bridge, mounts, iptables)"
	for t in containerd ctr runc iptables ip6tables ip flock; do
		command -v "$t" >/dev/null || die "$t not found: run make node-deps"
	done
	for t in bridge host-local loopback; do
		[[ -x /usr/lib/cni/$t ]] || die "/usr/lib/cni/$t not found: run make node-deps"
	done
	# unix sockets are limited to 108 bytes; containerd adds ".ttrpc".
	((${#NODE} + 22 <= 107)) || die "CLUSTER_DIR is too long for containerd's socket ($NODE/containerd.sock.ttrpc)"
	if [[ -z ${PAUSE_IMAGE_ARCHIVE:-} ]]; then
		PAUSE_IMAGE_ARCHIVE=$(make -s --no-print-directory -C "$REPO_ROOT" pause-image-path 2>/dev/null) || true
	fi
	[[ -s ${PAUSE_IMAGE_ARCHIVE:-} ]] || die "no pause image archive (${PAUSE_IMAGE_ARCHIVE:-unset}): run make pause-image"
fi

# Serialise cluster-up/cluster-down on this state dir (parallel test binaries, two
# terminals). cluster-down.sh, when called from here, is told we already hold the lock.
exec 9>"$CLUSTER_DIR/.lock"
flock -w 600 9 || die "timed out waiting for the lock on $CLUSTER_DIR"
export GATEHOUSE_CLUSTER_LOCKED=1

# apiserver_ready: /readyz answers ok to the admin client certificate.
apiserver_ready() {
	[[ -f $CLUSTER_DIR/cluster.env ]] || return 1
	local API_PORT host
	API_PORT=$(sed -n 's/^API_PORT=//p' "$CLUSTER_DIR/cluster.env")
	host=$(sed -n 's/^API_HOST=//p' "$CLUSTER_DIR/cluster.env")
	[[ -n $API_PORT ]] || return 1
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://${host:-127.0.0.1}:$API_PORT/readyz" >/dev/null 2>&1
}

# The cluster is "up" when every component recorded in run/ is alive and ours, the
# apiserver is ready and the final kubeconfig exists.
cluster_healthy() {
	local c
	for c in "${COMPONENTS[@]}"; do is_ours "$(pid_of "$c")" || return 1; done
	# A cluster with a node when none is asked for (or the other way round) is restarted.
	if [[ $CLUSTER_NODE == 1 ]]; then
		grep -q '^NODE_NAME=' "$CLUSTER_DIR/cluster.env" 2>/dev/null || return 1
	else
		! grep -q '^NODE_NAME=' "$CLUSTER_DIR/cluster.env" 2>/dev/null || return 1
	fi
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
	# names and the first IP of the service range (the `kubernetes` service), and with a
	# node the bridge address it binds.
	local node_san=""
	if [[ $CLUSTER_NODE == 1 ]]; then node_san=",IP:$NODE_IP"; fi
	sign apiserver "/CN=kube-apiserver" "$(printf '%s' \
		"subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1$node_san,DNS:kubernetes," \
		"DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
		$'\nextendedKeyUsage=serverAuth')" || return 1
	sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth" || return 1
	if [[ $CLUSTER_NODE == 1 ]]; then
		# The kubelet's identity (the Node authorizer and NodeRestriction know it by this
		# name), its serving certificate for the address the API server dials, and the API
		# server's client certificate for the kubelet (logs, exec, port-forward).
		sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth" || return 1
		sign kubelet-serving "/CN=$NODE_NAME" "$(printf '%s' \
			"subjectAltName=DNS:$NODE_NAME,IP:$NODE_IP" $'\nextendedKeyUsage=serverAuth')" || return 1
		sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
			"extendedKeyUsage=clientAuth" || return 1
	fi
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null &&
		openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE PORT [CERT]: an admin kubeconfig (or CERT's, e.g. the kubelet's)
# with the certs embedded, so it can be copied anywhere (e.g. into a test's temp dir) and
# still work.
write_kubeconfig() {
	local file=$1 port=$2 cert=${3:-admin}
	rm -f "$file"
	"$KUBECTL" config --kubeconfig="$file" set-cluster gatehouse-local --embed-certs=true \
		--server="https://$API_HOST:$port" --certificate-authority="$PKI/ca.crt" >/dev/null &&
		"$KUBECTL" config --kubeconfig="$file" set-credentials gatehouse-admin --embed-certs=true \
			--client-certificate="$PKI/$cert.crt" --client-key="$PKI/$cert.key" >/dev/null &&
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

# write_audit_policy: every request at level Metadata (who, what, verb, response code,
# RBAC's decision; no bodies). RequestReceived is left out: each request is then one
# ResponseComplete event (watches also a ResponseStarted), which is what tests count.
write_audit_policy() {
	cat >"$CLUSTER_DIR/audit-policy.yaml" <<-EOF
		apiVersion: audit.k8s.io/v1
		kind: Policy
		omitStages: [RequestReceived]
		rules:
		  - level: Metadata
	EOF
}

# --- the node (CLUSTER_NODE=1) ----------------------------------------------------------

# node_claim: take the machine's node lock for as long as this cluster runs (a process of
# ours holds it, so cluster-down ends it with the rest), clear whatever an earlier node
# that is no longer running left behind, record ourselves as the owner, make the bridge.
node_claim() {
	local pid ok=false owner
	rm -f "$RUN/node-lock.held"
	# shellcheck disable=SC2016 # expanded by the inner bash
	launch node-lock bash -c 'exec 8>>"$1" && flock -n 8 || exit 75; echo "$$" >"$2"; exec sleep infinity' \
		node-lock "$NODE_LOCK" "$RUN/node-lock.held"
	pid=$(pid_of node-lock)
	for _ in $(seq 100); do
		if [[ -s $RUN/node-lock.held ]]; then ok=true; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if ! $ok; then
		owner=$(node_owner)
		log "another cluster's node runs on this machine (cluster dir ${owner:-unknown}; lock $NODE_LOCK): a machine has room for one node only (kube-proxy's iptables chains are global)."
		log "stop it first: CLUSTER_DIR=${owner:-<its dir>} $REPO_ROOT/hack/cluster-down.sh"
		return 1
	fi
	owner=$(node_owner)
	if [[ -n $owner && $owner != "$CLUSTER_DIR" ]]; then
		log "clearing what the node of $owner left behind (it no longer runs)"
		CLUSTER_DIR=$owner GATEHOUSE_CLUSTER_LOCKED="" "$REPO_ROOT/hack/cluster-down.sh" --quiet || true
	fi
	# We hold the lock: whatever machine-wide node state exists is a leftover.
	node_clean_machine "$BIN" "$CLUSTER_DIR"
	printf 'CLUSTER_DIR=%s\nCONTROLPLANE_BIN=%s\nLOCK_PID=%s\n' "$CLUSTER_DIR" "$BIN" "$pid" >"$NODE_OWNER"

	# The pod range must not be in use on this machine already.
	if ip -4 route show match "$NODE_IP" | grep -v '^default' | grep -q .; then
		log "$POD_CIDR overlaps a route of this machine: $(ip -4 route show match "$NODE_IP" | grep -v '^default' | tr '\n' ' ')"
		return 1
	fi
	ip link add "$NODE_BRIDGE" type bridge &&
		ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE" &&
		ip link set "$NODE_BRIDGE" up || { log "creating bridge $NODE_BRIDGE failed"; return 1; }
}

# write_node_config: containerd's config, the CNI network, the kubelet's config and
# kubeconfig, all under $NODE.
write_node_config() {
	mkdir -p "$NODE"/{containerd,runc,kubelet,pod-logs,volume-plugins,cni/net.d,cni/ipam}
	# restrict_oom_score_adj: this machine does not allow lowering oom_score_adj; without it
	# every sandbox fails ("can't get final child's PID from pipe: EOF").
	# netns_mounts_under_state_dir: pods' network namespaces under $NODE, not /run/netns.
	# The opt plugin would install into /opt/containerd; the other disabled plugins are
	# snapshotters that cannot work here. The runc shims' state goes under $NODE/runc.
	cat >"$NODE/containerd.toml" <<-EOF
		version = 2
		root = "$NODE/containerd/root"
		state = "$NODE/containerd/state"
		oom_score = 0
		disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

		[grpc]
		  address = "$NODE/containerd.sock"
		[ttrpc]
		  address = "$NODE/containerd.sock.ttrpc"
		[debug]
		  address = ""
		  level = "info"
		[metrics]
		  address = ""

		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "gatehouse.local/pause:1"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  enable_selinux = false
		  tolerate_missing_hugetlb_controller = true
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		        Root = "$NODE/runc"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$NODE/cni/net.d"
		    max_conf_num = 1
	EOF
	# The bridge exists already, with its address (node_claim): the plugin only attaches
	# veths. isGateway false: the plugin would otherwise enable IPv4 forwarding machine-
	# wide; pods still route through the bridge address (host-local's gateway), which is
	# all they need (the API server and Services are reached on this host). No ipMasq:
	# nothing leaves the machine. hairpinMode: a pod reaches itself through its Service.
	cat >"$NODE/cni/net.d/10-gatehouse.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "gatehouse",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$NODE_BRIDGE",
		      "isGateway": false,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "dataDir": "$NODE/cni/ipam",
		        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
		        "routes": [{ "dst": "0.0.0.0/0" }]
		      }
		    }
		  ]
		}
	EOF
	# evictionHard {} and the image GC thresholds: imported images cannot be pulled again,
	# so nothing is ever evicted or collected. oomScoreAdj 0: lowering it is not allowed
	# here. volumePluginDir: the default is under /usr/libexec, which the kubelet creates.
	cat >"$NODE/kubelet.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $NODE_IP
		port: $KUBELET_PORT
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		healthzPort: $KUBELET_HEALTHZ_PORT
		tlsCertFile: $PKI/kubelet-serving.crt
		tlsPrivateKeyFile: $PKI/kubelet-serving.key
		rotateCertificates: false
		serverTLSBootstrap: false
		authentication:
		  anonymous:
		    enabled: false
		  webhook:
		    enabled: true
		  x509:
		    clientCAFile: $PKI/ca.crt
		authorization:
		  mode: Webhook
		containerRuntimeEndpoint: unix://$NODE/containerd.sock
		cgroupDriver: cgroupfs
		cgroupsPerQOS: false
		enforceNodeAllocatable: []
		failSwapOn: false
		oomScoreAdj: 0
		podLogsDir: $NODE/pod-logs
		volumePluginDir: $NODE/volume-plugins
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		evictionHard: {}
		clusterDomain: cluster.local
		resolvConf: /etc/resolv.conf
		registerNode: true
	EOF
	write_kubeconfig "$NODE/kubelet.kubeconfig" "$API_PORT" kubelet-client
}

k() { "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }
node_registered() { k get node "$NODE_NAME" >/dev/null 2>&1; }
# node_ready: Ready, and the node-lifecycle controller has removed the not-ready taint.
node_ready() {
	local out
	out=$(k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}') || return 1
	[[ $out == True* && $out != *node.kubernetes.io/not-ready* ]]
}

# start_node: containerd (and the pause image), the kubelet, kube-scheduler, kube-proxy;
# then wait for the Node to be Ready and schedulable.
start_node() {
	local pid sock=$NODE/containerd.sock
	write_node_config || return 1

	launch containerd containerd --config "$NODE/containerd.toml"
	pid=$(pid_of containerd)
	wait_for containerd "$pid" ctr -a "$sock" version || return 1
	ctr -a "$sock" -n k8s.io images import "$PAUSE_IMAGE_ARCHIVE" >/dev/null ||
		{ log "importing $PAUSE_IMAGE_ARCHIVE failed"; return 1; }
	phase containerd

	# The kubelet changes a few kernel settings at start; cluster-down puts them back.
	node_save_sysctls
	# shellcheck disable=SC2086
	launch kubelet "$BIN" kubelet --config="$NODE/kubelet.yaml" \
		--kubeconfig="$NODE/kubelet.kubeconfig" --root-dir="$NODE/kubelet" \
		--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
		${KUBELET_EXTRA_ARGS:-}
	pid=$(pid_of kubelet)
	wait_for kubelet "$pid" curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" || return 1
	wait_for kubelet "$pid" node_registered || return 1
	phase kubelet

	# shellcheck disable=SC2086
	launch kube-scheduler "$BIN" kube-scheduler \
		--kubeconfig="$ADMIN_KUBECONFIG" \
		--authentication-kubeconfig="$ADMIN_KUBECONFIG" \
		--authentication-skip-lookup --client-ca-file="$PKI/ca.crt" \
		--authorization-kubeconfig="$ADMIN_KUBECONFIG" \
		--bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
		--leader-elect=false \
		${SCHEDULER_EXTRA_ARGS:-}

	# iptables mode. No kernel setting is written: --conntrack-max-per-core=0 and the zero
	# conntrack timeouts leave the host's values; --iptables-localhost-nodeports=false keeps
	# route_localnet off (NodePorts answer on the node address only). A min sync period
	# of 0: a Service works as soon as its EndpointSlice says ready (default: up to 1 s
	# later), which is cheap with the few rules a test cluster has.
	# shellcheck disable=SC2086
	launch kube-proxy "$BIN" kube-proxy \
		--kubeconfig="$ADMIN_KUBECONFIG" --hostname-override="$NODE_NAME" \
		--proxy-mode=iptables --cluster-cidr="$POD_CIDR" --iptables-min-sync-period=0s \
		--nodeport-addresses="$NODE_IP/32" --iptables-localhost-nodeports=false \
		--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
		--conntrack-tcp-timeout-close-wait=0 \
		--metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" \
		--healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT" \
		${PROXY_EXTRA_ARGS:-}

	wait_for kube-scheduler "$(pid_of kube-scheduler)" \
		curl -fsSk --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz" || return 1
	wait_for kube-proxy "$(pid_of kube-proxy)" \
		curl -fsS --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" || return 1
	phase scheduler+proxy
	wait_for kubelet "$(pid_of kubelet)" node_ready || return 1
	phase node-ready
}

# start_cluster: one attempt at bringing everything up. Returns non-zero on failure,
# leaving whatever it started for the caller to clean up.
start_cluster() {
	local ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT data pid
	mkdir -p "$RUN" "$LOGS"
	local c
	for c in "${COMPONENTS[@]}"; do : >"$LOGS/$c.log"; done
	# A new cluster: the previous one's controller logs (hack/stack-up.sh appends) go too.
	rm -f "$LOGS"/cert-manager.log "$LOGS"/metallb.log "$LOGS"/named-*.log "$LOGS"/external-dns-*.log
	# The audit log of this cluster alone (tests count requests from it).
	rm -f "$LOGS"/audit.log "$LOGS"/audit-*.log

	# Free loopback ports, chosen now (never fixed, so several clusters can coexist).
	read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT \
		KUBELET_PORT KUBELET_HEALTHZ_PORT SCHEDULER_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT \
		< <("$BIN" free-ports 9) || return 1
	[[ -n $PROXY_METRICS_PORT ]] || return 1
	cat >"$CLUSTER_DIR/cluster.env" <<-EOF
		# Written by hack/cluster-up.sh; sourceable from a shell.
		CLUSTER_DIR=$CLUSTER_DIR
		KUBECONFIG=$CLUSTER_DIR/kubeconfig
		APISERVER_URL=https://$API_HOST:$API_PORT
		ETCD_URL=http://127.0.0.1:$ETCD_PORT
		ETCD_PORT=$ETCD_PORT
		ETCD_PEER_PORT=$ETCD_PEER_PORT
		API_HOST=$API_HOST
		API_PORT=$API_PORT
		KCM_PORT=$KCM_PORT
		AUDIT_LOG=$LOGS/audit.log
	EOF

	PHASES=() PHASE_T0=${EPOCHREALTIME/,/.}
	make_pki || { log "making certificates failed"; return 1; }
	write_kubeconfig "$ADMIN_KUBECONFIG" "$API_PORT" || return 1
	write_audit_policy
	phase certs

	# The node's machine lock and its bridge come first: the API server binds the
	# bridge's address.
	if [[ $CLUSTER_NODE == 1 ]]; then
		node_claim || return 1
		phase node-lock+bridge
	fi

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

	# Without a node: --endpoint-reconciler-type=none: the apiserver would otherwise
	# publish its address (127.0.0.1) as the `kubernetes` service's endpoints, and loopback
	# endpoints are invalid. There are no pods here to use that service anyway.
	# With a node: it binds and advertises the bridge address, which pods reach (also as
	# the `kubernetes` Service's endpoint, kept by the lease reconciler); the Node
	# authorizer and NodeRestriction give the kubelet its node identity; it dials the
	# kubelet at its InternalIP with a client certificate and checks the kubelet's serving
	# certificate against the cluster CA (kubectl logs, exec).
	# Every cluster: an audit log of every request (write_audit_policy); 200 MB before it
	# rotates, which no test run reaches.
	local api_args=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1
		--authorization-mode=RBAC --endpoint-reconciler-type=none)
	if [[ $CLUSTER_NODE == 1 ]]; then
		api_args=(--bind-address="$NODE_IP" --advertise-address="$NODE_IP"
			--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
			--endpoint-reconciler-type=lease
			--kubelet-preferred-address-types=InternalIP
			--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
			--kubelet-client-key="$PKI/apiserver-kubelet-client.key"
			--kubelet-certificate-authority="$PKI/ca.crt")
	fi
	# shellcheck disable=SC2086
	launch kube-apiserver "$BIN" kube-apiserver \
		"${api_args[@]}" --secure-port="$API_PORT" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112 \
		--allow-privileged=true \
		--audit-policy-file="$CLUSTER_DIR/audit-policy.yaml" \
		--audit-log-path="$LOGS/audit.log" --audit-log-format=json \
		--audit-log-maxsize=200 --audit-log-maxbackup=3 --audit-log-maxage=0 \
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
	# With a node, the serviceaccount-token controller signs tokens with the API server's
	# key and puts the cluster CA next to them; the root-ca publisher uses the same CA.
	local kcm_args=()
	if [[ $CLUSTER_NODE == 1 ]]; then
		kcm_args=(--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt")
	fi
	# shellcheck disable=SC2086
	launch kube-controller-manager "$BIN" kube-controller-manager "${kcm_args[@]}" \
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

	if [[ $CLUSTER_NODE == 1 ]]; then
		start_node || return 1
		cat >>"$CLUSTER_DIR/cluster.env" <<-EOF
			NODE_NAME=$NODE_NAME
			NODE_IP=$NODE_IP
			POD_CIDR=$POD_CIDR
			NODE_BRIDGE=$NODE_BRIDGE
			CONTAINERD_SOCKET=$NODE/containerd.sock
			KUBELET_PORT=$KUBELET_PORT
		EOF
	fi

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
