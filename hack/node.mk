# hack/node.mk: what the opt-in real node of the local cluster needs on this machine
# (CLUSTER_NODE=1 hack/cluster-up.sh: containerd, kubelet, kube-scheduler, kube-proxy; see
# shared/design/real-stack.md, "A real node on this machine").
#
# Included by the top-level Makefile, after hack/stack.mk.
#
# Targets:
#   node-deps         install Debian's containerd, runc, containernetworking-plugins,
#                     iptables and buildah if missing, without leaving containerd running
#                     as a system service (the harness runs its own containerd)
#   pause-image       build the pod sandbox image gatehouse.local/pause:1 (tests/node/pause.c,
#                     static, from scratch) into an OCI archive, once per source
#   pause-image-path  print $(PAUSE_IMAGE_ARCHIVE) (make -s pause-image-path)
# With CLUSTER_NODE=1, `make cluster-up` depends on node-deps and pause-image.
#
# Exported to every recipe: PAUSE_IMAGE_ARCHIVE (cluster-up.sh imports it into the node).

NODE_ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
NODE_CACHE ?= $(abspath $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse)

# Packages and the programs that tell they are installed (the CNI plugins live in
# /usr/lib/cni, not on PATH).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables buildah
NODE_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: node-deps pause-image pause-image-path

# Installs only when something is missing; `apt-get update` only when the first install
# fails (stale or missing lists). The harness runs containerd itself (own config, root and
# socket under $CLUSTER_DIR/node), so the package's service must not stay running: under
# systemd disable and stop it; elsewhere stop a containerd the install started, i.e. a
# /usr/bin/containerd that does not carry a cluster's marker (GATEHOUSE_CLUSTER_DIR).
node-deps:
	@have() { command -v "$$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$$1" ]; }; \
	ok() { have containerd && have ctr && have runc && have iptables && have ip6tables && \
	  have buildah && [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && \
	  [ -x /usr/lib/cni/loopback ]; }; \
	if ok; then exit 0; fi; \
	echo "node-deps: installing $(NODE_PACKAGES)"; \
	aptget() { $(NODE_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$$@"; }; \
	aptget install -y --no-install-recommends $(NODE_PACKAGES) || \
	  { aptget update && aptget install -y --no-install-recommends $(NODE_PACKAGES); } || exit 1; \
	if [ -d /run/systemd/system ]; then \
	  $(NODE_SUDO) systemctl disable --now containerd.service >/dev/null 2>&1 || true; \
	else \
	  for p in /proc/[0-9]*; do \
	    [ "$$(readlink $$p/exe 2>/dev/null)" = /usr/bin/containerd ] || continue; \
	    $(NODE_SUDO) grep -qz '^GATEHOUSE_CLUSTER_DIR=' $$p/environ 2>/dev/null && continue; \
	    echo "node-deps: stopping the containerd service the package started (pid $${p#/proc/})"; \
	    $(NODE_SUDO) kill "$${p#/proc/}" || true; \
	  done; \
	fi; \
	ok || { echo "node-deps: something is still missing after installing $(NODE_PACKAGES)" >&2; exit 1; }

# The pause image: one static binary in an image from scratch, built with buildah (vfs
# storage, its own root under the cache: nothing in the repo or in /var/lib/containers) and
# written as an OCI archive whose name is keyed on the source and this recipe, so it is
# built once. cluster-up.sh imports it into the node's containerd (namespace k8s.io).
PAUSE_IMAGE := gatehouse.local/pause:1
PAUSE_SRC   := $(NODE_ROOT)/tests/node/pause.c
PAUSE_CFLAGS := -static -Os -s -Wall -Wextra -Werror
PAUSE_KEY   := $(shell { cat $(PAUSE_SRC); echo '$(PAUSE_IMAGE) $(PAUSE_CFLAGS) v1'; } | sha256sum | cut -c1-16)
PAUSE_IMAGE_ARCHIVE := $(NODE_CACHE)/images/pause-$(PAUSE_KEY).oci.tar
BUILDAH_DIR := $(NODE_CACHE)/buildah
export PAUSE_IMAGE_ARCHIVE

pause-image: $(PAUSE_IMAGE_ARCHIVE)

# Order-only on node-deps (gcc aside, buildah is the one tool needed). flock keeps two
# builds from racing; the archive is written under a temporary name and renamed.
$(PAUSE_IMAGE_ARCHIVE): | node-deps
	@mkdir -p $(@D) $(BUILDAH_DIR)
	@flock $(BUILDAH_DIR)/.build.lock bash -c '\
	  set -euo pipefail; \
	  if [ -s "$@" ]; then exit 0; fi; \
	  echo "pause-image: building $(PAUSE_IMAGE) into $@"; \
	  tmp=$$(mktemp -d); trap "rm -rf $$tmp" EXIT; \
	  gcc $(PAUSE_CFLAGS) -o $$tmp/pause $(PAUSE_SRC); \
	  b() { buildah --storage-driver vfs --root $(BUILDAH_DIR)/root --runroot $(BUILDAH_DIR)/runroot "$$@"; }; \
	  ctr=$$(b from --quiet scratch); trap "b rm $$ctr >/dev/null 2>&1 || true; rm -rf $$tmp" EXIT; \
	  b copy --quiet --chmod 0755 $$ctr $$tmp/pause /pause; \
	  b config --entrypoint "[\"/pause\"]" --cmd "" --user 65535:65535 \
	    --label org.opencontainers.image.source=tests/node/pause.c $$ctr; \
	  rm -f "$@".tmp.*; \
	  b commit --quiet --format oci $$ctr "oci-archive:$@.tmp.$$$$:$(PAUSE_IMAGE)" >/dev/null; \
	  mv -f "$@.tmp.$$$$" "$@"'

pause-image-path:
	@echo $(PAUSE_IMAGE_ARCHIVE)

# `make cluster-up CLUSTER_NODE=1` (or with CLUSTER_NODE=1 in the environment) gets what the
# node needs first.
cluster-up: $(if $(filter 1,$(CLUSTER_NODE)),node-deps pause-image)
