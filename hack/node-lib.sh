# hack/node-lib.sh: the opt-in real node of the local cluster (CLUSTER_NODE=1
# hack/cluster-up.sh), shared by cluster-up.sh, cluster-down.sh and node-import.sh (sourced,
# not run). See shared/design/real-stack.md, "A real node on this machine".
#
# A machine has room for ONE node: kube-proxy's and the kubelet's iptables chains are
# global, and so are the names below. Whoever runs a node holds $NODE_LOCK (a flock held by
# a long-lived process carrying its cluster's marker) and names its cluster dir in
# $NODE_OWNER. Everything machine-wide the node makes is found by these names only:
#   the bridge $NODE_BRIDGE (and the veths attached to it), the iptables chains of
#   kube-proxy and the kubelet, the kernel settings the kubelet changes (saved in
#   $NODE_SYSCTLS and put back), and what the kubelet or containerd put in fixed places:
#   the shims' sockets in /run/containerd/s, /var/lib/kubelet/device-plugins (the device
#   manager's socket, a constant in the kubelet), links in /var/log/containers.
# Everything else lives under $CLUSTER_DIR/node (containerd's root, state, socket and its
# netns mounts, runc's state, the kubelet's root dir, pod logs and volume plugin dir, the
# CNI config and IPAM state). Pod processes are found by their root filesystem (an overlay
# whose layers are under $CLUSTER_DIR/node), their cgroups (containerd's /k8s.io/<id>:
# with cgroupsPerQOS off the kubelet gives no cgroup parent) from those processes.

NODE_NAME=gatehouse-node
NODE_BRIDGE=gatehouse0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
NODE_LOCK=/run/gatehouse-node.lock
NODE_OWNER=/run/gatehouse-node.owner
NODE_SYSCTLS=/run/gatehouse-node.sysctl
# The kernel settings the kubelet sets at start (pkg/kubelet/cm: setupKernelTunables, with
# protectKernelDefaults false), and the values it sets.
NODE_KUBELET_SYSCTLS="vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000"
# The kubelet's own chains (pkg/kubelet/kubelet_network_linux.go), which kube-proxy
# --cleanup does not remove.
NODE_KUBELET_CHAINS="KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT"

nlog() { [[ ${QUIET:-false} == true ]] || echo "${LOG_PREFIX:-node}: $*" >&2; }

# node_lock_free: nobody holds the machine's node lock right now.
node_lock_free() {
	[[ -e $NODE_LOCK ]] || return 0
	flock -n "$NODE_LOCK" true 2>/dev/null
}
# node_owner: the cluster dir named in $NODE_OWNER (first line), if any.
node_owner() { sed -n '1s/^CLUSTER_DIR=//p' "$NODE_OWNER" 2>/dev/null || true; }
node_owner_bin() { sed -n 's/^CONTROLPLANE_BIN=//p' "$NODE_OWNER" 2>/dev/null || true; }

# node_stop_pods DIR: the graceful part of stopping DIR's node, while its processes may
# still run: stop the kubelet first (it would restart what we stop), then kill and delete
# every task in its containerd's k8s.io namespace (the kubelet leaves containers running
# when it exits; deleting a task lets its shim exit and unmount the container's rootfs).
node_stop_pods() {
	local dir=$1 pid sock ids id
	pid=$(cat "$dir/run/kubelet.pid" 2>/dev/null || true)
	if [[ $pid =~ ^[0-9]+$ ]] && grep -qzxF "GATEHOUSE_CLUSTER_DIR=$dir" /proc/"$pid"/environ 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	pid=$(cat "$dir/run/containerd.pid" 2>/dev/null || true)
	sock=$dir/node/containerd.sock
	if [[ $pid =~ ^[0-9]+$ && -S $sock ]] && grep -qzxF "GATEHOUSE_CLUSTER_DIR=$dir" /proc/"$pid"/environ 2>/dev/null; then
		c() { timeout 20 ctr -a "$sock" -n k8s.io "$@"; }
		ids=$(c tasks ls -q 2>/dev/null || true)
		if [[ -n $ids ]]; then
			nlog "killing $(wc -w <<<"$ids") pod containers"
			for id in $ids; do c tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
			for id in $ids; do
				for _ in $(seq 50); do
					[[ $(c tasks ls 2>/dev/null | awk -v id="$id" '$1 == id { print $3 }') == RUNNING ]] || break
					sleep 0.1
				done
				c tasks delete -f "$id" >/dev/null 2>&1 || true
			done
		fi
	fi
}

# node_kill_pods DIR: kill the pod containers of DIR's node that still run (their shims or
# containerd were killed: they are re-parented to init and run on), and remove their
# cgroups. First through runc's own state (runc's root is under DIR/node), then any
# process whose root filesystem is an overlay over DIR/node's snapshots (when that state
# is gone too, e.g. after `rm -rf` of the cluster dir: mount points survive it).
node_kill_pods() {
	local dir=$1 root=$1/node/runc/k8s.io id p pids="" cg cgs=() d
	if [[ -d $root ]] && command -v runc >/dev/null; then
		for id in $(runc --root "$root" list -q 2>/dev/null); do
			runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	for p in /proc/[0-9]*; do
		if awk -v s="=$dir/node/containerd/root/" '$5 == "/" && index($0, s) { f = 1 } END { exit !f }' "$p/mountinfo" 2>/dev/null; then
			pids+=" ${p#/proc/}"
			while IFS=: read -r _ _ cg; do [[ $cg == /k8s.io/* ]] && cgs+=("$cg"); done <"$p/cgroup" 2>/dev/null || true
		fi
	done
	if [[ -n $pids ]]; then
		nlog "killing pod processes left without their shims:$pids"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		for _ in $(seq 50); do
			local alive=false
			for p in $pids; do [[ -d /proc/$p ]] && alive=true; done
			$alive || break
			sleep 0.1
		done
	fi
	for cg in $(printf '%s\n' "${cgs[@]}" | sort -u); do
		[[ $cg == /k8s.io/?* ]] || continue
		for d in /sys/fs/cgroup/*"$cg" /sys/fs/cgroup"$cg"; do
			if [[ -d $d ]]; then rmdir "$d" 2>/dev/null || nlog "could not remove cgroup $d"; fi
		done
	done
	return 0
}

# node_unmount DIR: unmount everything mounted at or below DIR/node, deepest first
# (network namespaces, the kubelet's root bind-mounted onto itself, pod volumes, shm,
# container root filesystems).
node_unmount() {
	local base=$1/node m left
	for _ in 1 2 3; do
		left=0
		while IFS= read -r m; do
			left=1
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done < <(awk -v base="$base" '{ p = $5; gsub(/\\040/, " ", p); if (p == base || index(p, base "/") == 1) print p }' /proc/self/mountinfo | sort -r)
		((left)) || return 0
	done
	if awk -v base="$base" '{ p = $5; if (p == base || index(p, base "/") == 1) f = 1 } END { exit !f }' /proc/self/mountinfo; then
		nlog "mounts left under $base"
	fi
}

# node_remove_bridge: the veths still attached to the bridge (their pods' namespaces are
# gone with the mounts and processes) and the bridge itself.
node_remove_bridge() {
	local v
	ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || return 0
	for v in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		ip link delete "$v" 2>/dev/null || true
	done
	ip link delete "$NODE_BRIDGE" type bridge 2>/dev/null || nlog "could not delete bridge $NODE_BRIDGE"
}

# node_delete_chain IPT TABLE CHAIN: delete every rule that jumps to CHAIN, then flush and
# delete it.
node_delete_chain() {
	local ipt=$1 table=$2 chain=$3 rule
	"$ipt" -w -t "$table" -S "$chain" >/dev/null 2>&1 || return 0
	while IFS= read -r rule; do
		# -S prints "-A FROM ... -j CHAIN"; xargs honours its double quotes (comments).
		xargs "$ipt" -w -t "$table" -D <<<"${rule#-A }" 2>/dev/null || true
	done < <("$ipt" -w -t "$table" -S 2>/dev/null | grep -E -- "-(j|g) $chain( |$)")
	"$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
	"$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
}

# node_kube_chains: the KUBE-* chains left in the host's tables (for checks).
node_kube_chains() {
	local ipt t
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		for t in filter nat mangle raw; do
			"$ipt" -w -t "$t" -S 2>/dev/null | awk -v w="$ipt/$t" '$1 == "-N" && $2 ~ /^KUBE-/ { print w, $2 }'
		done
	done
}

# node_clean_iptables BIN: kube-proxy's chains (its own --cleanup, which also drops its
# nftables and IPVS state if any), then the kubelet's; if chains of kube-proxy remain
# (no binary at hand), delete them directly.
node_clean_iptables() {
	local bin=$1 ipt t c
	command -v iptables >/dev/null || return 0
	if [[ -n $bin && -x $bin ]]; then
		"$bin" kube-proxy --cleanup >/dev/null 2>&1 || true
	fi
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		for t in filter mangle nat; do
			for c in $NODE_KUBELET_CHAINS; do node_delete_chain "$ipt" "$t" "$c"; done
		done
	done
	if [[ -n $(node_kube_chains) ]]; then
		# Jumps from the built-in chains first, then the chains in any order: flush all,
		# then delete all (they reference each other).
		while read -r w c; do
			ipt=${w%/*} t=${w#*/}
			node_delete_chain "$ipt" "$t" "$c"
		done < <(node_kube_chains)
		while read -r w c; do "${w%/*}" -w -t "${w#*/}" -F "$c" 2>/dev/null || true; done < <(node_kube_chains)
		while read -r w c; do "${w%/*}" -w -t "${w#*/}" -X "$c" 2>/dev/null || true; done < <(node_kube_chains)
	fi
	[[ -z $(node_kube_chains) ]] || nlog "iptables chains left: $(node_kube_chains | tr '\n' ' ')"
}

# node_save_sysctls: before the kubelet starts, remember the values it is about to change
# (kept from an earlier run that was killed: those are the machine's own values).
node_save_sysctls() {
	[[ -s $NODE_SYSCTLS ]] && return 0
	local kv k v cur out=""
	for kv in $NODE_KUBELET_SYSCTLS; do
		k=${kv%%=*} v=${kv#*=}
		cur=$(sysctl -n "$k" 2>/dev/null) || continue
		[[ $cur == "$v" ]] || out+="$k $cur $v"$'\n'
	done
	printf '%s' "$out" >"$NODE_SYSCTLS.tmp" && mv -f "$NODE_SYSCTLS.tmp" "$NODE_SYSCTLS"
}
# node_restore_sysctls: put back what the kubelet changed, unless someone changed it since.
node_restore_sysctls() {
	[[ -f $NODE_SYSCTLS ]] || return 0
	local k orig set
	while read -r k orig set; do
		[[ -n $k ]] || continue
		if [[ $(sysctl -n "$k" 2>/dev/null) == "$set" ]]; then sysctl -qw "$k=$orig" >/dev/null 2>&1 || true; fi
	done <"$NODE_SYSCTLS"
	rm -f "$NODE_SYSCTLS"
}

# node_remove_shim_sockets DIR: containerd's runc shims listen on
# /run/containerd/s/<sha256 of "SOCKET/NAMESPACE/TASK">; one killed with SIGKILL leaves its
# socket behind. Remove those of DIR's tasks (the task ids are containerd's state dirs).
node_remove_shim_sockets() {
	local dir=$1 t h
	for t in "$dir"/node/containerd/state/io.containerd.runtime.v2.task/k8s.io/*/; do
		[[ -d $t ]] || continue
		t=${t%/}
		h=$(printf '%s' "$dir/node/containerd.sock/k8s.io/${t##*/}" | sha256sum | cut -c1-64)
		rm -f "/run/containerd/s/$h"
	done
	return 0
}

# node_clean_machine BIN DIR: everything machine-wide the node made. Only ever called while
# no node runs (the lock is free, or held by the caller about to start one).
node_clean_machine() {
	local bin=$1 dir=$2 l
	node_remove_bridge
	node_clean_iptables "$bin"
	node_restore_sysctls
	# The kubelet's links to pod logs (a fixed place) that point into a node dir of ours.
	for l in /var/log/containers/*.log; do
		[[ -L $l ]] || continue
		case $(readlink "$l") in "$dir"/node/* | */node/pod-logs/*) rm -f "$l" ;; esac
	done
	# libcni's result cache (containerd leaves libcni's default, /var/lib/cni/results) of
	# pods that were never torn down through CNI: the network named "gatehouse" is ours.
	rm -f /var/lib/cni/results/gatehouse-*
	rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
	# The device manager's socket and checkpoint (a fixed path in the kubelet, whatever
	# its --root-dir), and containerd's namespace cgroup once no container is left in it.
	rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
	rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers \
		/run/containerd/s /run/containerd 2>/dev/null || true
	for l in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
		if [[ -d $l ]]; then rmdir "$l" 2>/dev/null || true; fi
	done
	return 0
}

# node_teardown DIR BIN: the node of cluster DIR, once its processes are stopped: pods'
# leftovers, mounts, its state under DIR/node and, when no other node holds the machine,
# what it made machine-wide. Safe to repeat, and after DIR was partly removed.
node_teardown() {
	local dir=$1 bin=$2 owner machine=false
	owner=$(node_owner)
	[[ $owner == "$dir" || -d $dir/node ]] || return 0
	if node_lock_free; then machine=true; fi
	node_kill_pods "$dir"
	node_remove_shim_sockets "$dir"
	# libcni's cached results of this node's pods (they name its netns paths).
	{ grep -lsF "\"$dir/node/" /var/lib/cni/results/* 2>/dev/null || true; } | xargs -r rm -f
	node_unmount "$dir"
	rm -rf -- "$dir/node" 2>/dev/null || { node_unmount "$dir"; rm -rf -- "$dir/node" || nlog "could not remove $dir/node"; }
	if $machine; then
		node_clean_machine "$bin" "$dir"
		if [[ $(node_owner) == "$dir" ]]; then rm -f "$NODE_OWNER"; fi
	elif [[ -n $owner && $owner != "$dir" ]]; then
		nlog "the node of $owner runs on this machine: left its bridge, cgroups and chains alone"
	fi
}
