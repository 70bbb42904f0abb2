# hack/controlplane.mk: a real local Kubernetes control plane for the integration tests.
#
# Included by the top-level Makefile. The machines have no Docker and cannot download
# release binaries, so etcd, kube-apiserver and kube-controller-manager are built from Go
# modules into ONE binary (tests/controlplane), the way envtest runs a real apiserver.
# See shared/design/testing.md.
#
# Targets:
#   controlplane        build $(CONTROLPLANE_BIN) once (a no-op when it is already built)
#   cluster-up          start etcd + kube-apiserver + kube-controller-manager (idempotent);
#                       the admin kubeconfig is $(CLUSTER_KUBECONFIG)
#   cluster-down        stop them and remove their data
#   controlplane-check  check that tests/controlplane/go.mod agrees with K8S_VERSION
#   controlplane-sync   after editing tests/controlplane/K8S_VERSION: rewrite go.mod/go.sum
#   controlplane-path   print $(CONTROLPLANE_BIN) (for scripts: make -s controlplane-path)
#   controlplane-prune  delete cached binaries of other versions
#
# Exported to every recipe: CONTROLPLANE_BIN, CLUSTER_DIR, CLUSTER_KUBECONFIG.

# The repository root, found from this file's own path so the fragment works from any
# including Makefile (evaluated now, while this file is the last one read).
CONTROLPLANE_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
CONTROLPLANE_SRC  := $(CONTROLPLANE_ROOT)/tests/controlplane

# The ONE place the Kubernetes version is written; go.mod must agree (controlplane-check).
K8S_VERSION := $(strip $(shell cat $(CONTROLPLANE_SRC)/K8S_VERSION))
# v1.34.4 -> 1, 34 and the staging modules' v0.34.4.
K8S_MAJOR   := $(word 1,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_MINOR   := $(word 2,$(subst ., ,$(patsubst v%,%,$(K8S_VERSION))))
K8S_STAGING_VERSION := v0.$(patsubst v$(K8S_MAJOR).%,%,$(K8S_VERSION))

# The binary lives OUTSIDE the repo (never committed, survives `git clean`, shared by
# worktrees), in a directory keyed on everything that determines it: a change to the
# version, the module graph or main.go gives a new key and so a new build.
CONTROLPLANE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse/controlplane
CONTROLPLANE_KEY   := $(shell cd $(CONTROLPLANE_SRC) && cat K8S_VERSION go.mod go.sum main.go | sha256sum | cut -c1-16)
CONTROLPLANE_BIN   := $(CONTROLPLANE_CACHE)/$(CONTROLPLANE_KEY)/gatehouse-controlplane
export CONTROLPLANE_BIN

# Where cluster-up keeps its state (pids, logs, certs, kubeconfig); the scripts read it.
CLUSTER_DIR ?= $(CONTROLPLANE_ROOT)/.cluster
CLUSTER_KUBECONFIG := $(CLUSTER_DIR)/kubeconfig
export CLUSTER_DIR CLUSTER_KUBECONFIG

# Build like upstream's release builds (hack/lib/golang.sh): no symbols or DWARF, trimmed
# paths, the notest and grpcnotrace tags. The version variables make /version honest.
CONTROLPLANE_VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
CONTROLPLANE_LDFLAGS := -s -w $(foreach p,$(CONTROLPLANE_VERSION_PKGS),\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=$(K8S_MAJOR) \
	-X $(p).gitMinor=$(K8S_MINOR) -X $(p).gitTreeState=clean)
CONTROLPLANE_GOFLAGS := -mod=readonly -trimpath -tags=notest,grpcnotrace

.PHONY: controlplane controlplane-check controlplane-sync controlplane-path \
	controlplane-prune cluster-up cluster-down

controlplane: $(CONTROLPLANE_BIN)

# The binary's path changes with its inputs, so "exists" means "up to date". The check is
# order-only: it runs first but does not force a rebuild. flock serialises concurrent
# builds (parallel make, other worktrees sharing the cache); the build writes to a
# temporary name and renames, so a killed build never leaves a half-written binary.
$(CONTROLPLANE_BIN): | controlplane-check
	@mkdir -p $(@D)
	@flock $(CONTROLPLANE_CACHE)/.build.lock sh -c '\
	  if [ -x "$@" ]; then exit 0; fi; \
	  echo "controlplane: building Kubernetes $(K8S_VERSION) into $@ (a cold build takes many minutes)"; \
	  cd "$(CONTROLPLANE_SRC)" && \
	  go build $(CONTROLPLANE_GOFLAGS) -ldflags "$(CONTROLPLANE_LDFLAGS)" -o "$@.tmp.$$$$" . && \
	  mv -f "$@.tmp.$$$$" "$@"'

# Fails when go.mod does not pin k8s.io/kubernetes at $(K8S_VERSION) or replaces a k8s.io
# staging module with anything but $(K8S_STAGING_VERSION).
controlplane-check:
	@cd $(CONTROLPLANE_SRC) && \
	  case "$(K8S_VERSION)" in v[0-9]*.[0-9]*.[0-9]*) ;; \
	    *) echo "controlplane-check: bad K8S_VERSION '$(K8S_VERSION)'" >&2; exit 1;; esac; \
	  if ! grep -Eq '^[[:space:]]*k8s\.io/kubernetes $(K8S_VERSION)$$' go.mod; then \
	    echo "controlplane-check: go.mod does not require k8s.io/kubernetes $(K8S_VERSION): run make controlplane-sync" >&2; exit 1; fi; \
	  bad=$$(grep -E '^[[:space:]]*k8s\.io/[^ ]+ => ' go.mod | grep -v ' $(K8S_STAGING_VERSION)$$' || true); \
	  if [ -n "$$bad" ]; then \
	    echo "controlplane-check: staging replaces not at $(K8S_STAGING_VERSION): $$bad" >&2; exit 1; fi; \
	  if [ "$$(grep -cE '^[[:space:]]*k8s\.io/[^ ]+ => ' go.mod)" -lt 31 ]; then \
	    echo "controlplane-check: fewer than 31 staging replaces in go.mod" >&2; exit 1; fi

# After editing K8S_VERSION: read that release's own go.mod for its staging modules and
# its etcd, point go.mod at them, and let `go mod tidy` complete go.sum.
controlplane-sync:
	cd $(CONTROLPLANE_SRC) && \
	  gomod=$$(go mod download -json k8s.io/kubernetes@$(K8S_VERSION) | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$$/\1/p') && \
	  test -n "$$gomod" && \
	  etcd=$$(awk '$$1 == "go.etcd.io/etcd/server/v3" { print $$2; exit }' "$$gomod") && \
	  go mod edit -require=k8s.io/kubernetes@$(K8S_VERSION) \
	    -require=go.etcd.io/etcd/server/v3@$$etcd \
	    $$(awk '$$2 == "=>" && $$3 ~ /^\.\/staging\// { printf " -replace=%s=%s@$(K8S_STAGING_VERSION)", $$1, $$1 }' "$$gomod") && \
	  GOFLAGS=-mod=mod go mod tidy
	$(MAKE) controlplane-check

controlplane-path:
	@echo $(CONTROLPLANE_BIN)

controlplane-prune:
	@find $(CONTROLPLANE_CACHE) -mindepth 1 -maxdepth 1 -type d ! -name $(CONTROLPLANE_KEY) -print -exec rm -rf {} +

cluster-up: controlplane
	@$(CONTROLPLANE_ROOT)/hack/cluster-up.sh

cluster-down:
	@$(CONTROLPLANE_ROOT)/hack/cluster-down.sh
