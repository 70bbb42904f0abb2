# Gatehouse: the targets a newcomer needs.
#   make demo   local control plane + CRDs + samples, then shows the objects and status
#   make test   unit tests, golden tests and integration tests against a real kube-apiserver
SHELL := /bin/bash
.DEFAULT_GOAL := help

include hack/controlplane.mk
include hack/stack.mk
include hack/node.mk
include hack/images.mk

CARGO ?= cargo

# Helm, for the chart test, built from its Go module once into a cache outside the repo
# (no release downloads here). One place for its version.
HELM_VERSION := v3.19.0
HELM_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse/helm/$(HELM_VERSION)/helm
export HELM_BIN
GATEHOUSE := target/debug/gatehouse
CRD_FILE := config/crd/gatehouse.dev_crds.yaml

.PHONY: help build crds golden docs lint fmt test unit integration demo bench clean stack-up

help:
	@echo "make demo     start a local control plane, apply CRDs and samples, show the result"
	@echo "make test     all tests (unit, golden, integration against a real kube-apiserver)"
	@echo "make unit     tests that need no cluster"
	@echo "make crds     regenerate $(CRD_FILE) from the Rust types"
	@echo "make golden   regenerate expected render output (fixtures and samples); review the diff"
	@echo "make docs     regenerate docs/setups/ (one page per sample set) from the samples and their renders"
	@echo "make lint     cargo fmt --check, clippy -D warnings, cargo deny (deny.toml)"
	@echo "make deny     the cargo-deny checks alone (licenses, bans, sources, advisories)"
	@echo "make advisory-db  clone or update the RustSec advisory database cargo deny reads (ADVISORY_DB_SOURCE=)"
	@echo "make bench    render throughput benchmark"
	@echo "make chaos-long  the fault tests at full size: 1,000 apps, 20 SIGKILLs (CHAOS_* to change), own control planes"
	@echo "make fuzz     long differential fuzz run (CASES=5000, SEED=random) on a control plane of its own"
	@echo "make bench-scale  N apps (N=1000, IDLE=60) on a control plane of its own: plain client vs operator (cold, restart, idle)"
	@echo "make cluster-up / cluster-down   the local control plane alone (CLUSTER_NODE=1: with a real node)"
	@echo "make node-deps  install containerd, runc, CNI plugins, iptables, buildah for the node (tests use one)"
	@echo "make pause-image  the node's pod sandbox image gatehouse.local/pause:1, cached outside the repo"
	@echo "make stack-up  the real cert-manager, MetalLB and external-dns + BIND9 next to it"
	@echo "make upstream-crds   refresh tests/crds/ from the pinned upstream modules"
	@echo "make image    the operator's OCI image (static binary, scratch) as target/images/*.oci.tar, no daemon"
	@echo "make backend-image   the e2e test backend image (tests/images/backend), cached outside the repo"
	@echo "make images-verify   run both images with runc (uid 65532, read-only root), no cluster"

build:
	$(CARGO) build --workspace

crds: build
	$(GATEHOUSE) crd > $(CRD_FILE)
	cp $(CRD_FILE) charts/gatehouse/crds/gatehouse.dev_crds.yaml

golden:
	GATEHOUSE_UPDATE_GOLDEN=1 $(CARGO) test -p gatehouse-operator --test golden --test setup_docs

# The setup pages docs/setups/*.md, from the sample sets and their renderings.
docs:
	GATEHOUSE_UPDATE_GOLDEN=1 $(CARGO) test -p gatehouse-operator --test setup_docs

# cargo-deny (deny.toml: licenses, bans, sources, advisories), built once from crates.io into
# a cache outside the repo; one place for its version.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY_ROOT := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse/tools/cargo-deny-$(CARGO_DENY_VERSION)
CARGO_DENY := $(CARGO_DENY_ROOT)/bin/cargo-deny
# The RustSec advisory database: a git clone that cargo-deny opens without fetching (its host
# is not reachable from every machine). Absent, the advisories check is skipped, saying so.
ADVISORY_DB ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse/advisory-db
export ADVISORY_DB

$(CARGO_DENY):
	@echo "cargo-deny: building $(CARGO_DENY_VERSION) from crates.io into $(CARGO_DENY_ROOT) (once, a few minutes)"
	$(CARGO) install --locked --quiet cargo-deny@$(CARGO_DENY_VERSION) --root $(CARGO_DENY_ROOT)

# Where `make advisory-db` clones or updates the database from (a git URL or a local clone).
ADVISORY_DB_SOURCE ?= https://github.com/rustsec/advisory-db

.PHONY: cargo-deny deny advisory-db
cargo-deny: $(CARGO_DENY)

deny: $(CARGO_DENY)
	@CARGO_DENY='$(CARGO_DENY)' hack/deny.sh

advisory-db: $(CARGO_DENY)
	@CARGO_DENY='$(CARGO_DENY)' hack/deny.sh update '$(ADVISORY_DB_SOURCE)'

lint: $(CARGO_DENY)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@CARGO_DENY='$(CARGO_DENY)' hack/deny.sh

fmt:
	$(CARGO) fmt --all

unit:
	@hack/cargo-test.sh --workspace --all-targets --exclude gatehouse-tests

# Builds the control plane when it is not cached, starts it, runs every test, and always
# stops it again (also when a test fails or the run is interrupted).
$(HELM_BIN):
	@mkdir -p $(@D)
	@echo "helm: building $(HELM_VERSION) from its Go module into $@ (a few minutes, once)"
	@GOBIN=$(@D) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: helm
helm: $(HELM_BIN)

# The real controllers and the data path (Traefik, OAuth2 Proxy, the mock issuer, the policy
# engine: hack/stack.mk) are built once like the control plane; the third-party CRDs must be
# what the pinned upstream modules ship.
STACK_DEPS := stack-bins datapath-bins bgp-bins bind9 upstream-crds-check

# The node runs the operator's, the test backend's and OAuth2 Proxy's images, built here
# (hack/images.mk).
NODE_DEPS := node-deps pause-image image backend-image oauth2-proxy-image

test: controlplane helm $(STACK_DEPS) $(NODE_DEPS)
	@hack/test.sh

integration: controlplane helm $(STACK_DEPS) $(NODE_DEPS)
	@hack/with-cluster.sh hack/cargo-test.sh -p gatehouse-tests --all-targets --no-fail-fast

demo: controlplane build helm $(STACK_DEPS) $(NODE_DEPS)
	@hack/demo.sh

# The real controllers alone, next to a running `make cluster-up` (hack/stack-up.sh).
stack-up: stack-bins datapath-bins bind9
	@hack/stack-up.sh

bench:
	$(CARGO) run --release -p gatehouse-operator --example render_bench

clean: cluster-down
	$(CARGO) clean

# Convergence at scale (issue 10; README "Benchmark at scale"): a control plane of its own
# (never .cluster), the plain client's time next to the operator's; target/bench-scale/N.json.
# The fault tests of tests/chaos.rs at the sizes of issue 13's long run (make test runs
# them bounded: 200 apps, 10 kills). Each test starts a node-less control plane of its own.
CHAOS_APPS ?= 1000
CHAOS_KILLS ?= 20
.PHONY: chaos-long
chaos-long: controlplane
	CHAOS_APPS=$(CHAOS_APPS) CHAOS_KILLS=$(CHAOS_KILLS) CHAOS_LEADER_APPS=$(CHAOS_APPS) \
		$(CARGO) test -p gatehouse-tests --test chaos -- --nocapture

.PHONY: bench-scale
bench-scale: controlplane
	$(CARGO) build --release -p gatehouse-operator --bin gatehouse --example bench_scale
	@N='$(N)' IDLE='$(IDLE)' hack/bench-scale.sh

# Hostile input, long (issue 13): tests/tests/fuzz.rs with CASES random inputs (make test runs
# 1000 with a fixed seed) on a node-less control plane of its own (.cluster-fuzz-run, never
# .cluster), stopped again also on failure or Ctrl-C. SEED replays a run (printed at start).
CASES ?= 5000
SEED ?= $(shell od -An -N6 -tu8 /dev/urandom | tr -d ' ')
FUZZ_CLUSTER_DIR ?= $(CURDIR)/.cluster-fuzz-run
.PHONY: fuzz
fuzz: controlplane
	$(CARGO) build -p gatehouse-tests --tests
	@export CLUSTER_DIR='$(FUZZ_CLUSTER_DIR)' CLUSTER_KUBECONFIG='$(FUZZ_CLUSTER_DIR)/kubeconfig' \
	  CLUSTER_NODE=0 CONTROLPLANE_BIN='$(CONTROLPLANE_BIN)'; \
	trap 'hack/cluster-down.sh' EXIT; \
	hack/cluster-up.sh && \
	FUZZ_CASES='$(CASES)' FUZZ_SEED='$(SEED)' $(CARGO) test -p gatehouse-tests --test fuzz -- --nocapture
