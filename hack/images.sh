#!/usr/bin/env bash
# hack/images.sh: the project's OCI images, built without a container daemon (hack/images.mk).
#
#   hack/images.sh operator   gatehouse.local/gatehouse:<version>: the static release binary at
#                             /gatehouse in an empty image, user 65532:65532, written to
#                             target/images/gatehouse-<version>.oci.tar (+ .digest); rebuilt
#                             only when the binary (or the recipe below) changed
#   hack/images.sh backend    gatehouse.local/backend:1: tests/images/backend (Go, standard
#                             library only, static) at /backend, user 65532:65532, written to
#                             $IMAGES_CACHE/images/backend/<source hash>/backend-1.oci.tar
#                             (+ .digest); built once per source hash
#   hack/images.sh oauth2-proxy  gatehouse.local/oauth2-proxy:<version>: $OAUTH2_PROXY_BIN
#                             (static, hack/stack.mk) at /oauth2-proxy, user 65532:65532,
#                             under $IMAGES_CACHE/images/oauth2-proxy/<key>/; built once
#   hack/images.sh verify     run both archives with runc as a pod would (uid 65532, read-only
#                             root filesystem, no capabilities, own network namespace)
#   hack/images.sh verify-run KUBECONFIG  the operator image's `gatehouse run` with runc
#                             against that control plane (uid 65532, read-only root): ready,
#                             reconciles a ClusterNetwork, exits on SIGTERM
#   hack/images.sh paths      print the three archive paths (they need not exist yet)
#   hack/images.sh buildah ARGS...   buildah ARGS with this storage, in the namespace below
#
# How: buildah FROM scratch, vfs storage under $IMAGES_CACHE/buildah (--root/--runroot), commit
# with --timestamp 0 and without buildah's identity label (the same binary gives the same
# digest), then `buildah push IMAGE oci-archive:FILE:NAME`. The archive's index names the
# image (org.opencontainers.image.ref.name), so `ctr images import FILE` imports it under
# that name.
#
# Trap: as root, buildah (containers/image) writes its blob-info cache to
# /var/lib/containers/cache whatever --root says. So every buildah call runs in a private
# mount namespace where /var/lib/containers is $IMAGES_CACHE/buildah/var-lib-containers;
# nothing outside the cache directory is written.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/hack/images.sh
CACHE=${IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse}
STORE=$CACHE/buildah
OUT=$ROOT/target/images
CARGO=${CARGO:-cargo}
TARGET=x86_64-unknown-linux-gnu
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/gatehouse
BACKEND_SRC=$ROOT/tests/images/backend
BACKEND_NAME=gatehouse.local/backend:1
OPERATOR_REPO=gatehouse.local/gatehouse
OAUTH2_PROXY_REPO=gatehouse.local/oauth2-proxy
# Where the source lives, for the org.opencontainers.image.source label: the origin remote
# when there is one, else the project's home (the chart's image is ghcr.io/gatehouse-dev/...).
DEFAULT_SOURCE=https://github.com/gatehouse-dev/gatehouse
# The user every image runs as (the Deployment's runAsUser/runAsGroup).
IMAGE_USER=65532:65532

log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------------------------------
# buildah, always in a private mount namespace (see the trap above) when run as root.

in_private_ns() {
	mkdir -p "$STORE/var-lib-containers" "$STORE/tmp"
	if [ "$(id -u)" != 0 ]; then
		# Rootless buildah keeps its caches under $HOME already.
		"$@"
		return
	fi
	unshare --mount --propagation private -- /bin/sh -ec '
		varlib=$1; shift
		if [ -d /var/lib/containers ]; then
			mount --bind "$varlib" /var/lib/containers
		else
			# Do not create it on the host: a tmpfs over /var/lib, in this namespace only.
			mount -t tmpfs -o mode=0755 tmpfs /var/lib
			mkdir /var/lib/containers
			mount --bind "$varlib" /var/lib/containers
		fi
		exec "$@"' sh "$STORE/var-lib-containers" "$@"
}

bh() {
	TMPDIR=$STORE/tmp buildah --root "$STORE/root" --runroot "$STORE/runroot" \
		--storage-driver vfs "$@"
}

# Internal, run by build_image inside the namespace:
#   _buildah NAME BINARY PATH_IN_IMAGE ARCHIVE DIGESTFILE -- buildah config args...
buildah_image() {
	local name=$1 bin=$2 dest=$3 archive=$4 digestfile=$5
	shift 6
	local ctr id tmp=$archive.tmp.$$
	ctr=$(bh from --quiet --name "gatehouse-build-$$" scratch)
	# shellcheck disable=SC2064
	trap "bh rm '$ctr' >/dev/null 2>&1 || true; rm -f '$tmp' '$tmp.digest'" EXIT
	bh copy --quiet --chmod 0755 "$ctr" "$bin" "$dest"
	bh config --os linux --arch amd64 --user "$IMAGE_USER" --workingdir / "$@" "$ctr"
	id=$(bh commit --quiet --format oci --identity-label=false --timestamp 0 --rm "$ctr" "$name")
	bh push --quiet --digestfile "$tmp.digest" "$id" "oci-archive:$tmp:$name"
	bh rmi "$id" >/dev/null
	mv -f "$tmp" "$archive"
	mv -f "$tmp.digest" "$digestfile"
	trap - EXIT
}

# build_image NAME BINARY PATH_IN_IMAGE ARCHIVE DIGESTFILE -- buildah config args...
# One build at a time per cache directory: the storage is shared (hack/node.mk's pause image
# uses it too, under the same lock file).
build_image() {
	command -v buildah >/dev/null || die "buildah is missing: make buildah"
	mkdir -p "$STORE" "$(dirname "$4")"
	flock "$STORE/.build.lock" "$SELF" _build "$@"
}

# labels KEY=VALUE...: each as an image label and a manifest annotation.
labels() {
	local kv
	for kv in "$@"; do printf -- '--label\0%s\0--annotation\0%s\0' "$kv" "$kv"; done
}

# is_static BINARY: both file(1) and ldd(1) agree that it needs no dynamic loader.
is_static() {
	local f l
	f=$(file -b "$1")
	l=$(ldd "$1" 2>&1 || true)
	[[ $f =~ (static-pie|statically)\ linked ]] &&
		[[ $l =~ (not\ a\ dynamic\ executable|statically\ linked) ]]
}

archive_size() { du -b "$1" | cut -f1; }

# recipe FUNCTION: the code and settings that make an image from its binary, part of the
# image's cache key (so editing the verification does not rebuild anything).
recipe() {
	declare -f buildah_image build_image labels "$1"
	echo "$IMAGE_USER $DEFAULT_SOURCE $BACKEND_NAME $TARGET"
}

# ---------------------------------------------------------------------------------------
# The operator.

operator_version() {
	"$CARGO" metadata --no-deps --format-version 1 --manifest-path "$ROOT/Cargo.toml" |
		jq -r '.packages[] | select(.name == "gatehouse-operator") | .version'
}

operator() {
	local version archive digestfile keyfile key revision source
	version=$(operator_version)
	archive=$OUT/gatehouse-$version.oci.tar
	digestfile=$OUT/gatehouse-$version.digest
	keyfile=$OUT/gatehouse-$version.key

	# The flag only for the target: --target keeps it off build scripts and proc macros
	# (a static build script would fail to load proc macros). A no-op when up to date.
	RUSTFLAGS="-C target-feature=+crt-static" "$CARGO" build --release --locked \
		--target "$TARGET" -p gatehouse-operator --bin gatehouse
	is_static "$BIN" || die "$BIN is not statically linked: $(file -b "$BIN")"
	[ "$("$BIN" --version)" = "gatehouse $version" ] ||
		die "$BIN --version says '$("$BIN" --version)', Cargo.toml says $version"

	key=$({ sha256sum <"$BIN"; recipe operator; } | sha)
	if [ -f "$archive" ] && [ -f "$digestfile" ] && [ "$(cat "$keyfile" 2>/dev/null)" = "$key" ]; then
		log "$OPERATOR_REPO:$version@$(cat "$digestfile") up to date ($archive)"
		return
	fi

	revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
	if [ "$revision" != unknown ] &&
		! git -C "$ROOT" --no-optional-locks diff --quiet HEAD -- \
			Cargo.toml Cargo.lock rust-toolchain.toml api operator 2>/dev/null; then
		revision=$revision-dirty
	fi
	source=$(git -C "$ROOT" remote get-url origin 2>/dev/null || echo "$DEFAULT_SOURCE")

	log "building $OPERATOR_REPO:$version (revision $revision) into $archive"
	local args=()
	mapfile -d '' args < <(labels \
		org.opencontainers.image.title=gatehouse \
		"org.opencontainers.image.description=Gatehouse: a cluster's network stack from three objects" \
		"org.opencontainers.image.version=$version" \
		"org.opencontainers.image.revision=$revision" \
		"org.opencontainers.image.source=$source" \
		org.opencontainers.image.licenses=Apache-2.0)
	# Entrypoint and default command as in the Dockerfile; the Deployment passes its own args.
	build_image "$OPERATOR_REPO:$version" "$BIN" /gatehouse "$archive" "$digestfile" -- \
		--entrypoint '["/gatehouse"]' --cmd '["run","--leader-elect"]' "${args[@]}"
	echo "$key" >"$keyfile"
	log "$OPERATOR_REPO:$version@$(cat "$digestfile") ($(archive_size "$archive") bytes, $archive)"
}

# ---------------------------------------------------------------------------------------
# The test backend.

backend_dir() {
	local key
	key=$(cd "$BACKEND_SRC" && { cat go.mod main.go; go env GOVERSION; recipe backend; } | sha | cut -c1-16)
	echo "$CACHE/images/backend/$key"
}

backend() {
	local dir archive digestfile
	dir=$(backend_dir)
	archive=$dir/backend-1.oci.tar
	digestfile=$dir/backend-1.digest
	if [ -f "$archive" ] && [ -f "$digestfile" ]; then
		log "$BACKEND_NAME@$(cat "$digestfile") up to date ($archive)"
		return
	fi
	mkdir -p "$dir"
	log "building $BACKEND_NAME from $BACKEND_SRC into $archive"
	(cd "$BACKEND_SRC" && CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false \
		-ldflags "-s -w" -o "$dir/backend.tmp.$$" . && mv -f "$dir/backend.tmp.$$" "$dir/backend")
	is_static "$dir/backend" || die "$dir/backend is not statically linked"
	local args=()
	mapfile -d '' args < <(labels \
		org.opencontainers.image.title=gatehouse-backend \
		"org.opencontainers.image.description=Gatehouse e2e test backend: answers with its pod name, host and path on every port of \$PORTS" \
		org.opencontainers.image.version=1 \
		"org.opencontainers.image.source=$(git -C "$ROOT" remote get-url origin 2>/dev/null || echo "$DEFAULT_SOURCE")" \
		org.opencontainers.image.licenses=Apache-2.0)
	build_image "$BACKEND_NAME" "$dir/backend" /backend "$archive" "$digestfile" -- \
		--entrypoint '["/backend"]' --cmd '[]' --env PORTS=8080 "${args[@]}"
	log "$BACKEND_NAME@$(cat "$digestfile") ($(archive_size "$archive") bytes, $archive)"
}

# ---------------------------------------------------------------------------------------
# OAuth2 Proxy, the sample sets' own sign-in workload: the static binary hack/stack.mk builds
# ($OAUTH2_PROXY_BIN, CGO_ENABLED=0) at /oauth2-proxy; built once per binary.

oauth2_proxy_version() {
	awk '$1 == "github.com/oauth2-proxy/oauth2-proxy/v7" { print $2; exit }' "$ROOT/tests/stack/oauth2-proxy/go.mod"
}

oauth2_proxy_dir() {
	: "${OAUTH2_PROXY_BIN:?run through make (it builds oauth2-proxy and sets OAUTH2_PROXY_BIN)}"
	local key
	# The cache key of the binary (its directory name under the stack cache) and the recipe.
	key=$({ basename "$(dirname "$OAUTH2_PROXY_BIN")"; recipe oauth2_proxy; } | sha | cut -c1-16)
	echo "$CACHE/images/oauth2-proxy/$key"
}

oauth2_proxy() {
	local dir archive digestfile version name
	dir=$(oauth2_proxy_dir)
	version=$(oauth2_proxy_version)
	name=$OAUTH2_PROXY_REPO:$version
	archive=$dir/oauth2-proxy-$version.oci.tar
	digestfile=$dir/oauth2-proxy-$version.digest
	if [ -f "$archive" ] && [ -f "$digestfile" ]; then
		log "$name@$(cat "$digestfile") up to date ($archive)"
		return
	fi
	[ -x "$OAUTH2_PROXY_BIN" ] || die "$OAUTH2_PROXY_BIN missing: make oauth2-proxy-bin"
	is_static "$OAUTH2_PROXY_BIN" || die "$OAUTH2_PROXY_BIN is not statically linked"
	mkdir -p "$dir"
	log "building $name from $OAUTH2_PROXY_BIN into $archive"
	local args=()
	mapfile -d '' args < <(labels \
		org.opencontainers.image.title=oauth2-proxy \
		"org.opencontainers.image.description=OAuth2 Proxy $version (github.com/oauth2-proxy/oauth2-proxy/v7) for Gatehouse's sign-in tests" \
		"org.opencontainers.image.version=$version" \
		org.opencontainers.image.licenses=MIT)
	build_image "$name" "$OAUTH2_PROXY_BIN" /oauth2-proxy "$archive" "$digestfile" -- \
		--entrypoint '["/oauth2-proxy"]' --cmd '[]' "${args[@]}"
	log "$name@$(cat "$digestfile") ($(archive_size "$archive") bytes, $archive)"
}

paths() {
	echo "$OUT/gatehouse-$(operator_version).oci.tar"
	echo "$(backend_dir)/backend-1.oci.tar"
	echo "$(oauth2_proxy_dir)/oauth2-proxy-$(oauth2_proxy_version).oci.tar"
}

# refs: the image references the archives of `paths` hold, in the same order.
refs() {
	echo "$OPERATOR_REPO:$(operator_version)"
	echo "$BACKEND_NAME"
	echo "$OAUTH2_PROXY_REPO:$(oauth2_proxy_version)"
}

# ---------------------------------------------------------------------------------------
# Verification with runc, no cluster.

RUNC_ROOT=$CACHE/verify/runc

# unpack ARCHIVE DIGESTFILE DIR: DIR/rootfs from the layers, DIR/image.json the image config;
# checks that the archive's manifest is the recorded digest.
unpack() {
	local archive=$1 digestfile=$2 dir=$3 manifest layer
	mkdir -p "$dir/oci" "$dir/rootfs"
	tar -xf "$archive" -C "$dir/oci"
	manifest=$(jq -r '.manifests[0].digest' "$dir/oci/index.json")
	[ "$manifest" = "$(cat "$digestfile")" ] ||
		die "$archive: manifest $manifest, recorded $(cat "$digestfile")"
	jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$dir/oci/index.json" \
		>"$dir/ref-name"
	blob() { echo "$dir/oci/blobs/${1%%:*}/${1#*:}"; }
	cp "$(blob "$(jq -r .config.digest "$(blob "$manifest")")")" "$dir/image.json"
	for layer in $(jq -r '.layers[].digest' "$(blob "$manifest")"); do
		tar -xf "$(blob "$layer")" -C "$dir/rootfs"
	done
}

# bundle DIR ARGS_JSON ENV_JSON JQ_FILTER: DIR/config.json for a pod-like container: the
# image's entrypoint/env plus ENV_JSON, the image's user, no capabilities, no new privileges, read-only root, own namespaces.
bundle() {
	local dir=$1 args=$2 env=$3 extra=$4 user
	user=$(jq -r '.config.User' "$dir/image.json")
	env=$(jq -c --argjson extra "$env" '(.config.Env // []) + $extra' "$dir/image.json")
	rm -f "$dir/config.json"
	runc spec --bundle "$dir"
	jq --argjson args "$args" --argjson env "$env" \
		--argjson uid "${user%%:*}" --argjson gid "${user#*:}" "
		.process.terminal = false | .process.args = \$args | .process.env = \$env
		| .process.cwd = \"/\" | .process.user = {uid: \$uid, gid: \$gid}
		| .process.noNewPrivileges = true
		| .process.capabilities = {bounding: [], effective: [], permitted: [], inheritable: [], ambient: []}
		| .root = {path: \"rootfs\", readonly: true} | .hostname = \"verify\"
		| $extra" "$dir/config.json" >"$dir/config.json.new"
	mv "$dir/config.json.new" "$dir/config.json"
}

image_args() { # image.json [CMD_JSON]: entrypoint + (CMD_JSON or the image's cmd)
	jq -c --argjson cmd "${2:-null}" '.config.Entrypoint + ($cmd // .config.Cmd // [])' "$1"
}

runc_() { runc --root "$RUNC_ROOT" "$@"; }

# terminate ID SECONDS WHAT: SIGTERM to the container's PID 1, as the kubelet stops a pod;
# prints the milliseconds until it stopped, or fails after SECONDS naming WHAT.
terminate() {
	local id=$1 seconds=$2 what=$3 t0 status
	t0=$(date +%s%N)
	runc_ kill "$id" TERM
	for _ in $(seq $((seconds * 10))); do
		[ "$(runc_ state "$id" 2>/dev/null | jq -r .status)" = stopped ] && break
		sleep 0.1
	done
	status=$(runc_ state "$id" | jq -r .status)
	[ "$status" = stopped ] || die "$what: still $status $seconds s after SIGTERM"
	echo $((($(date +%s%N) - t0) / 1000000))
}

verify() {
	command -v runc >/dev/null || die "runc is missing: make runc"
	local version work id pid out set fails=0 t0 ok
	version=$(operator_version)
	work=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-images-verify.XXXXXX")
	mkdir -p "$RUNC_ROOT"
	# shellcheck disable=SC2064
	trap "for c in \$(runc --root '$RUNC_ROOT' list -q 2>/dev/null | grep '^gatehouse-verify-$$-'); do runc --root '$RUNC_ROOT' delete --force \$c; done; rm -rf '$work'" EXIT

	# The operator.
	local op=$work/operator env_op
	unpack "$OUT/gatehouse-$version.oci.tar" "$OUT/gatehouse-$version.digest" "$op"
	log "operator: $(cat "$op/ref-name")@$(cat "$OUT/gatehouse-$version.digest"), config:" \
		"$(jq -c '.config | {User, Entrypoint, Cmd, Labels}' "$op/image.json")"
	env_op='[]'
	bundle "$op" "$(image_args "$op/image.json" '["--version"]')" "$env_op" .
	out=$(runc_ run --bundle "$op" "gatehouse-verify-$$-version")
	[ "$out" = "gatehouse $version" ] || die "operator --version printed '$out'"
	log "operator: --version as uid 65532, read-only root: $out"
	for set in "$ROOT"/config/samples/*/; do
		set=$(basename "$set")
		bundle "$op" "$(image_args "$op/image.json" "[\"render\",\"-f\",\"/samples/$set\"]")" "$env_op" \
			".mounts += [{destination: \"/samples\", type: \"bind\", source: \"$ROOT/config/samples\", options: [\"rbind\", \"ro\"]}]"
		# The golden file is stdout after the notes (stderr), as "# note: config/samples/...".
		if runc_ run --bundle "$op" "gatehouse-verify-$$-render" >"$work/$set.out" 2>"$work/$set.err" &&
			{ sed -n 's|^note: /samples/|# note: config/samples/|p' "$work/$set.err"; cat "$work/$set.out"; } \
				>"$work/$set.yaml" &&
			cmp -s "$work/$set.yaml" "$ROOT/tests/golden/samples/$set.yaml"; then
			log "operator: render -f /samples/$set (read-only bind mount) = tests/golden/samples/$set.yaml ($(wc -l <"$work/$set.yaml") lines)"
		else
			log "operator: render -f /samples/$set differs from its golden file or failed:"
			diff "$ROOT/tests/golden/samples/$set.yaml" "$work/$set.yaml" | head -20 >&2 || true
			head -5 "$work/$set.err" >&2
			fails=$((fails + 1))
		fi
	done

	# The backend, in its own network namespace like a pod: ports 80 and 3000 as uid 65532
	# with the pod-level safe sysctl net.ipv4.ip_unprivileged_port_start=0.
	local be=$work/backend bedir
	bedir=$(backend_dir)
	unpack "$bedir/backend-1.oci.tar" "$bedir/backend-1.digest" "$be"
	log "backend: $(cat "$be/ref-name")@$(cat "$bedir/backend-1.digest"), config:" \
		"$(jq -c '.config | {User, Entrypoint, Cmd, Env}' "$be/image.json")"

	# Without the sysctl, port 80 must be refused to the non-root user (why pods need it).
	bundle "$be" "$(image_args "$be/image.json")" '["PORTS=80","POD_NAME=backend-nosysctl"]' .
	out=$(timeout 10 runc --root "$RUNC_ROOT" run --bundle "$be" "gatehouse-verify-$$-nosysctl" 2>&1) || true
	case $out in
	*"permission denied"*) ;;
	*) die "backend: expected port 80 to be refused to uid 65532 without the sysctl: $out" ;;
	esac
	log "backend: without the sysctl, port 80 as uid 65532 is refused: $out"

	bundle "$be" "$(image_args "$be/image.json")" '["PORTS=80,3000","POD_NAME=backend-verify-0"]' \
		'.linux.sysctl = {"net.ipv4.ip_unprivileged_port_start": "0"}'
	id=gatehouse-verify-$$-backend
	runc_ run --detach --bundle "$be" "$id" >"$work/backend.log" 2>&1
	pid=$(runc_ state "$id" | jq -r .pid)
	in_pod() { nsenter --net="/proc/$pid/ns/net" "$@"; }
	for port in 80 3000; do
		ok=
		for _ in $(seq 50); do
			if out=$(in_pod curl -fsS -H "Host: app$port.example.com" "http://127.0.0.1:$port/some/path" 2>/dev/null); then
				ok=1
				break
			fi
			sleep 0.1
		done
		[ -n "$ok" ] || die "backend: no answer on port $port: $(cat "$work/backend.log")"
		[ "$out" = "backend-verify-0"$'\n'"app$port.example.com /some/path" ] ||
			die "backend: port $port answered '$out'"
		log "backend: port $port answers: $(echo "$out" | paste -sd'|')"
	done
	[ "$(in_pod curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:3000/healthz)" = 200 ] ||
		die "backend: /healthz is not 200"
	log "backend: /healthz 200"
	# An assignment, so that a failed terminate stops the script (set -e).
	t0=$(terminate "$id" 5 backend)
	log "backend: exited $t0 ms after SIGTERM (PID 1)"
	runc_ delete "$id"
	[ "$fails" = 0 ] || die "$fails render(s) failed"
	log "verified both images"
}


# verify_run KUBECONFIG: the operator image's `gatehouse run` as a pod would run it (uid
# 65532, read-only root, no capabilities, no new privileges), against the control plane of
# KUBECONFIG (certificates embedded; mounted read-only). It shares the host's network
# namespace only to reach a loopback API server. Checks: /readyz answers 200 (caches synced
# and the API server answering), the process's uid/gid, capabilities and root mount, a
# ClusterNetwork it reconciles to Ready, and its exit on SIGTERM.
verify_run() {
	local kubeconfig=${1:?usage: images.sh verify-run KUBECONFIG}
	command -v runc >/dev/null || die "runc is missing: make runc"
	local version work op id pid port t0 ok uid gid capeff rootopts net code
	version=$(operator_version)
	work=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-images-run.XXXXXX")
	id=gatehouse-verify-$$-run
	mkdir -p "$RUNC_ROOT"
	net=gatehouse-image-check-$$
	# shellcheck disable=SC2064
	trap "runc --root '$RUNC_ROOT' delete --force '$id' >/dev/null 2>&1 || true; kubectl --kubeconfig '$kubeconfig' delete clusternetwork '$net' --ignore-not-found --wait=false >/dev/null 2>&1 || true; rm -rf '$work'" EXIT
	op=$work/operator
	unpack "$OUT/gatehouse-$version.oci.tar" "$OUT/gatehouse-$version.digest" "$op"
	cp "$kubeconfig" "$work/kubeconfig"
	chmod 0444 "$work/kubeconfig"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	bundle "$op" "$(image_args "$op/image.json" "[\"run\",\"--http-addr\",\"127.0.0.1:$port\"]")" \
		'["KUBECONFIG=/etc/gatehouse/kubeconfig","RUST_LOG=info"]' \
		".mounts += [{destination: \"/etc/gatehouse/kubeconfig\", type: \"bind\", source: \"$work/kubeconfig\", options: [\"bind\", \"ro\"]}]
		| .linux.namespaces |= map(select(.type != \"network\"))"
	t0=$(date +%s%N)
	runc_ run --detach --bundle "$op" "$id" >"$work/run.log" 2>&1
	pid=$(runc_ state "$id" | jq -r .pid)
	ok=
	for _ in $(seq 600); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
		if [ "$code" = 200 ]; then ok=1; break; fi
		[ "$(runc_ state "$id" 2>/dev/null | jq -r .status)" = running ] ||
			die "run: the operator exited: $(tail -20 "$work/run.log")"
		sleep 0.1
	done
	[ -n "$ok" ] || die "run: /readyz not 200 within 60 s (last $code): $(tail -20 "$work/run.log")"
	log "run: /readyz 200 $((($(date +%s%N) - t0) / 1000000)) ms after start (caches synced, API server answering)"
	uid=$(awk '/^Uid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$pid/status")
	gid=$(awk '/^Gid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$pid/status")
	capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
	rootopts=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo" | tail -1)
	[ "$uid" = 65532:65532:65532:65532 ] || die "run: uid $uid, want 65532"
	[ "$gid" = 65532:65532:65532:65532 ] || die "run: gid $gid, want 65532"
	[ "$capeff" = 0000000000000000 ] || die "run: effective capabilities $capeff"
	[[ ,$rootopts, == *,ro,* ]] || die "run: root mounted $rootopts, want ro"
	log "run: pid $pid uid/gid 65532, CapEff $capeff, root filesystem mounted $rootopts"
	kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null <<-EOF
		apiVersion: gatehouse.dev/v1alpha1
		kind: ClusterNetwork
		metadata:
		  name: $net
		spec: {}
	EOF
	kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready "clusternetwork/$net" --timeout=60s >/dev/null ||
		die "run: ClusterNetwork $net not Ready: $(tail -20 "$work/run.log")"
	log "run: reconciled ClusterNetwork $net to Ready"
	kubectl --kubeconfig "$kubeconfig" delete clusternetwork "$net" >/dev/null
	t0=$(terminate "$id" 10 run)
	log "run: exited $t0 ms after SIGTERM"
	runc_ delete "$id"
	log "verified gatehouse run from the image"
}

case "${1:-}" in
_build) shift; in_private_ns "$SELF" _buildah "$@" ;; # internal: build_image under the lock
_buildah) shift; buildah_image "$@" ;;                 # internal: inside the namespace
operator) operator ;;
backend) backend ;;
oauth2-proxy) oauth2_proxy ;;
verify) verify ;;
verify-run) shift; verify_run "$@" ;;
paths) paths ;;
refs) refs ;;
buildah) shift; in_private_ns "$SELF" _bh "$@" ;;
_bh) shift; bh "$@" ;;
*) die "usage: $0 operator|backend|oauth2-proxy|verify|verify-run KUBECONFIG|paths|refs|buildah ARGS..." ;;
esac
