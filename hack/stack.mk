# hack/stack.mk: the real third-party controllers the integration tests run against, built
# from their Go modules, and their CRDs. See shared/design/real-stack.md.
#
# Included by the top-level Makefile, after hack/controlplane.mk. Each component is a
# consumer Go module under tests/stack/<name>/ (go.mod + go.sum pin every version); its
# binary is built ONCE into a cache outside the repo, keyed on everything that determines
# it, like the control plane.
#
# Targets:
#   stack-bins            all four binaries below (one `go build` at a time)
#   cert-manager-bin      $(CERT_MANAGER_BIN)  our own main over cert-manager v1.20's controllers
#   metallb-bin           $(METALLB_BIN)       MetalLB's controller (upstream main)
#   metallb-speaker-bin   $(METALLB_SPEAKER_BIN) MetalLB's speaker (upstream main, same
#                                              module and version as the controller)
#   external-dns-bin      $(EXTERNAL_DNS_BIN)  external-dns (upstream main, every provider)
#   kstatus-bin           $(KSTATUS_BIN)       kstatus of JSON objects on stdin
#   stack-paths           print the four binary paths (make -s stack-paths)
#   bgp-bins              the BGP check's two binaries: metallb-speaker-bin, gobgp-bin
#   gobgp-bin             $(GOBGP_BIN)         a BGP router printing the routes it receives
#                                              (our main over github.com/osrg/gobgp/v3)
#   bgp-paths             print the BGP check's two binary paths
#   datapath-bins         the data path's four binaries below (a prerequisite of make test
#                         and make demo beside stack-bins)
#   traefik-bin           $(TRAEFIK_BIN)       Traefik (upstream cmd/traefik)
#   oauth2-proxy-bin      $(OAUTH2_PROXY_BIN)  oauth2-proxy (upstream main)
#   mockoidc-bin          $(MOCKOIDC_BIN)      a mock OIDC issuer on loopback (our main over
#                                              github.com/oauth2-proxy/mockoidc)
#   policy-bin            $(POLICY_BIN)        NetworkPolicy allow/deny table for probes on
#                                              stdin (our main over cyclonus's matcher)
#   policy-test           go test of the policy helper
#   datapath-paths        print the data path's four binary paths
#   stack-prune           delete cached binaries of other keys
#   bind9                 install Debian's bind9 + bind9-dnsutils (named, dig, nsupdate,
#                         tsig-keygen) if missing, without leaving named running as a service
#   upstream-crds         regenerate tests/crds/ from tests/stack/crds.list
#   upstream-crds-check   fail if tests/crds/ differs from what the list gives
#
# Exported to every recipe: CERT_MANAGER_BIN, METALLB_BIN, EXTERNAL_DNS_BIN, KSTATUS_BIN,
# TRAEFIK_BIN, OAUTH2_PROXY_BIN, MOCKOIDC_BIN, POLICY_BIN, METALLB_SPEAKER_BIN, GOBGP_BIN.

STACK_ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
STACK_SRC   := $(STACK_ROOT)/tests/stack
STACK_CACHE ?= $(abspath $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse/stack)

# stack_key DIR,GOVERSION: the first 16 hex digits of the sha256 over the component's
# go.mod, go.sum, its own *.go files and the Go toolchain that builds it. A change to any
# of them gives a new directory and so a new build; an unchanged one is never rebuilt.
stack_key = $(shell cd $(1) && { cat go.mod go.sum; for f in *.go; do [ -f "$$f" ] && cat "$$f"; done; echo "$(2)"; } | sha256sum | cut -c1-16)
# stack_goversion DIR: the toolchain `go` picks in DIR (its go.mod's go line may make it
# switch when GOTOOLCHAIN allows).
stack_goversion = $(shell cd $(1) && go env GOVERSION)

# Like the control plane: trimmed paths, no symbols or DWARF, the module graph as committed
# (-mod=readonly), no VCS stamp (the repo's state must not change the binary).
STACK_GOFLAGS := -mod=readonly -trimpath -buildvcs=false -ldflags "-s -w"

# cert-manager: tests/stack/cert-manager/main.go (upstream's cmd/controller is a separate
# module the proxy does not serve).
CERT_MANAGER_SRC := $(STACK_SRC)/cert-manager
CERT_MANAGER_KEY := $(call stack_key,$(CERT_MANAGER_SRC),$(call stack_goversion,$(CERT_MANAGER_SRC)))
CERT_MANAGER_BIN := $(STACK_CACHE)/cert-manager/$(CERT_MANAGER_KEY)/gatehouse-cert-manager

# MetalLB: the checksum database has no entry for github.com/metallb/frr-k8s v0.0.21; go.sum
# (seeded from MetalLB's own go.sum) holds its hash, and GONOSUMDB keeps a cold module
# cache from asking the checksum database for it.
comma := ,
METALLB_SRC := $(STACK_SRC)/metallb
METALLB_ENV := GONOSUMDB=$(if $(GONOSUMDB),$(GONOSUMDB)$(comma))github.com/metallb/frr-k8s
METALLB_KEY := $(call stack_key,$(METALLB_SRC),$(call stack_goversion,$(METALLB_SRC)))
METALLB_BIN := $(STACK_CACHE)/metallb/$(METALLB_KEY)/metallb-controller
METALLB_SPEAKER_BIN := $(STACK_CACHE)/metallb/$(METALLB_KEY)/metallb-speaker

# external-dns v0.23.0 declares go 1.27.0; go1.27.3 is the toolchain the proxy serves.
EXTERNAL_DNS_SRC       := $(STACK_SRC)/external-dns
EXTERNAL_DNS_GOTOOLCHAIN := go1.27.3
EXTERNAL_DNS_ENV       := GOTOOLCHAIN=$(EXTERNAL_DNS_GOTOOLCHAIN)
EXTERNAL_DNS_KEY       := $(call stack_key,$(EXTERNAL_DNS_SRC),$(EXTERNAL_DNS_GOTOOLCHAIN))
EXTERNAL_DNS_BIN       := $(STACK_CACHE)/external-dns/$(EXTERNAL_DNS_KEY)/external-dns

KSTATUS_SRC := $(STACK_SRC)/kstatus
KSTATUS_KEY := $(call stack_key,$(KSTATUS_SRC),$(call stack_goversion,$(KSTATUS_SRC)))
KSTATUS_BIN := $(STACK_CACHE)/kstatus/$(KSTATUS_KEY)/gatehouse-kstatus

export CERT_MANAGER_BIN METALLB_BIN EXTERNAL_DNS_BIN KSTATUS_BIN

# BGP: MetalLB's speaker (native BGP, same consumer module and key as the controller) and a
# real BGP router it peers with (hack/stack-up.sh bgp).
GOBGP_SRC := $(STACK_SRC)/gobgp
GOBGP_KEY := $(call stack_key,$(GOBGP_SRC),$(call stack_goversion,$(GOBGP_SRC)))
GOBGP_BIN := $(STACK_CACHE)/gobgp/$(GOBGP_KEY)/gatehouse-gobgp

export METALLB_SPEAKER_BIN GOBGP_BIN

# The data path: Traefik in front, oauth2-proxy for sign-in against a mock OIDC issuer,
# and cyclonus's NetworkPolicy semantics (no enforcing CNI runs on the node).

# Traefik v3.6.12: upstream's cmd/traefik as a go.mod tool; its replace lines are copied
# into the consumer go.mod (the reason `go install` cannot build it).
TRAEFIK_SRC := $(STACK_SRC)/traefik
TRAEFIK_KEY := $(call stack_key,$(TRAEFIK_SRC),$(call stack_goversion,$(TRAEFIK_SRC)))
TRAEFIK_BIN := $(STACK_CACHE)/traefik/$(TRAEFIK_KEY)/traefik

# Static (no cgo): it runs as a pod from an image FROM scratch (hack/images.sh oauth2-proxy),
# as the sample's own OAuth2 Proxy workload. The key says so, so an older dynamic build in
# the cache is not taken for it.
OAUTH2_PROXY_SRC := $(STACK_SRC)/oauth2-proxy
OAUTH2_PROXY_KEY := $(call stack_key,$(OAUTH2_PROXY_SRC),$(call stack_goversion,$(OAUTH2_PROXY_SRC)) CGO_ENABLED=0)
OAUTH2_PROXY_BIN := $(STACK_CACHE)/oauth2-proxy/$(OAUTH2_PROXY_KEY)/oauth2-proxy

MOCKOIDC_SRC := $(STACK_SRC)/mockoidc
MOCKOIDC_KEY := $(call stack_key,$(MOCKOIDC_SRC),$(call stack_goversion,$(MOCKOIDC_SRC)))
MOCKOIDC_BIN := $(STACK_CACHE)/mockoidc/$(MOCKOIDC_KEY)/gatehouse-mockoidc

POLICY_SRC := $(STACK_SRC)/policy
POLICY_KEY := $(call stack_key,$(POLICY_SRC),$(call stack_goversion,$(POLICY_SRC)))
POLICY_BIN := $(STACK_CACHE)/policy/$(POLICY_KEY)/gatehouse-policy

export TRAEFIK_BIN OAUTH2_PROXY_BIN MOCKOIDC_BIN POLICY_BIN

.PHONY: stack-bins cert-manager-bin metallb-bin external-dns-bin kstatus-bin stack-paths \
	stack-prune bind9 upstream-crds upstream-crds-check \
	datapath-bins traefik-bin oauth2-proxy-bin mockoidc-bin policy-bin policy-test datapath-paths \
	bgp-bins metallb-speaker-bin gobgp-bin bgp-paths

stack-bins: cert-manager-bin metallb-bin external-dns-bin kstatus-bin
cert-manager-bin: $(CERT_MANAGER_BIN)
metallb-bin: $(METALLB_BIN)
metallb-speaker-bin: $(METALLB_SPEAKER_BIN)
external-dns-bin: $(EXTERNAL_DNS_BIN)
kstatus-bin: $(KSTATUS_BIN)

bgp-bins: metallb-speaker-bin gobgp-bin
gobgp-bin: $(GOBGP_BIN)

datapath-bins: traefik-bin oauth2-proxy-bin mockoidc-bin policy-bin
traefik-bin: $(TRAEFIK_BIN)
oauth2-proxy-bin: $(OAUTH2_PROXY_BIN)
mockoidc-bin: $(MOCKOIDC_BIN)
policy-bin: $(POLICY_BIN)

# Per-binary settings for the shared recipe: the component's directory, the package to
# build (the module's own main, or the upstream main declared with a go.mod tool line) and
# extra environment.
$(CERT_MANAGER_BIN): STACK_DIR := $(CERT_MANAGER_SRC)
$(CERT_MANAGER_BIN): STACK_PKG := .
$(CERT_MANAGER_BIN): STACK_ENV :=
$(METALLB_BIN): STACK_DIR := $(METALLB_SRC)
$(METALLB_BIN): STACK_PKG := go.universe.tf/metallb/controller
$(METALLB_BIN): STACK_ENV := $(METALLB_ENV)
$(METALLB_SPEAKER_BIN): STACK_DIR := $(METALLB_SRC)
$(METALLB_SPEAKER_BIN): STACK_PKG := go.universe.tf/metallb/speaker
$(METALLB_SPEAKER_BIN): STACK_ENV := $(METALLB_ENV)
$(EXTERNAL_DNS_BIN): STACK_DIR := $(EXTERNAL_DNS_SRC)
$(EXTERNAL_DNS_BIN): STACK_PKG := sigs.k8s.io/external-dns
$(EXTERNAL_DNS_BIN): STACK_ENV := $(EXTERNAL_DNS_ENV)
$(KSTATUS_BIN): STACK_DIR := $(KSTATUS_SRC)
$(KSTATUS_BIN): STACK_PKG := .
$(KSTATUS_BIN): STACK_ENV :=
$(GOBGP_BIN): STACK_DIR := $(GOBGP_SRC)
$(GOBGP_BIN): STACK_PKG := .
$(GOBGP_BIN): STACK_ENV :=
$(TRAEFIK_BIN): STACK_DIR := $(TRAEFIK_SRC)
$(TRAEFIK_BIN): STACK_PKG := github.com/traefik/traefik/v3/cmd/traefik
$(TRAEFIK_BIN): STACK_ENV :=
$(OAUTH2_PROXY_BIN): STACK_DIR := $(OAUTH2_PROXY_SRC)
$(OAUTH2_PROXY_BIN): STACK_PKG := github.com/oauth2-proxy/oauth2-proxy/v7
$(OAUTH2_PROXY_BIN): STACK_ENV := CGO_ENABLED=0
$(MOCKOIDC_BIN): STACK_DIR := $(MOCKOIDC_SRC)
$(MOCKOIDC_BIN): STACK_PKG := .
$(MOCKOIDC_BIN): STACK_ENV :=
$(POLICY_BIN): STACK_DIR := $(POLICY_SRC)
$(POLICY_BIN): STACK_PKG := .
$(POLICY_BIN): STACK_ENV :=

# The path changes with the inputs, so "exists" means "up to date". One lock for all stack
# builds: they never run in parallel with each other (make -j, other worktrees sharing the
# cache), since each alone keeps two cores busy. The build writes a temporary name and
# renames it, so a killed build never leaves a half-written binary (leftovers of killed
# builds are removed under the lock).
$(CERT_MANAGER_BIN) $(METALLB_BIN) $(EXTERNAL_DNS_BIN) $(KSTATUS_BIN) \
$(METALLB_SPEAKER_BIN) $(GOBGP_BIN) \
$(TRAEFIK_BIN) $(OAUTH2_PROXY_BIN) $(MOCKOIDC_BIN) $(POLICY_BIN):
	@mkdir -p $(@D)
	@flock $(STACK_CACHE)/.build.lock sh -c '\
	  if [ -x "$@" ]; then exit 0; fi; \
	  rm -f "$@".tmp.*; \
	  echo "stack: building $(notdir $@) ($(STACK_PKG) in $(STACK_DIR)) into $@"; \
	  cd "$(STACK_DIR)" && \
	  env $(STACK_ENV) go build $(STACK_GOFLAGS) -o "$@.tmp.$$$$" $(STACK_PKG) && \
	  mv -f "$@.tmp.$$$$" "$@"'

stack-paths:
	@echo $(CERT_MANAGER_BIN)
	@echo $(METALLB_BIN)
	@echo $(EXTERNAL_DNS_BIN)
	@echo $(KSTATUS_BIN)

bgp-paths:
	@echo $(METALLB_SPEAKER_BIN)
	@echo $(GOBGP_BIN)

datapath-paths:
	@echo $(TRAEFIK_BIN)
	@echo $(OAUTH2_PROXY_BIN)
	@echo $(MOCKOIDC_BIN)
	@echo $(POLICY_BIN)

# The helper's unit tests (a truth table of small policies); they compile the same packages
# as policy-bin, so run them under the same lock.
policy-test:
	@mkdir -p $(STACK_CACHE)
	@flock $(STACK_CACHE)/.build.lock sh -c 'cd "$(POLICY_SRC)" && go test -mod=readonly -trimpath ./...'

stack-prune:
	@for d in cert-manager:$(CERT_MANAGER_KEY) metallb:$(METALLB_KEY) \
	    external-dns:$(EXTERNAL_DNS_KEY) kstatus:$(KSTATUS_KEY) \
	    traefik:$(TRAEFIK_KEY) oauth2-proxy:$(OAUTH2_PROXY_KEY) mockoidc:$(MOCKOIDC_KEY) \
	    policy:$(POLICY_KEY) gobgp:$(GOBGP_KEY); do \
	  name=$${d%%:*}; key=$${d#*:}; \
	  [ -d "$(STACK_CACHE)/$$name" ] || continue; \
	  find "$(STACK_CACHE)/$$name" -mindepth 1 -maxdepth 1 -type d ! -name "$$key" -print -exec rm -rf {} +; \
	done

# BIND9 for external-dns's rfc2136 provider. Installs only when a tool is missing; runs
# `apt-get update` only when the first install attempt fails (stale or missing lists).
# Tests run their own `named -c CONF -g` on loopback, so the Debian service must not stay
# running: disable and stop it under systemd; elsewhere stop the daemon the package
# started, if any (only the one named in the package's pid file, never a test's named).
BIND9_PACKAGES := bind9 bind9-dnsutils
BIND9_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
bind9:
	@have() { command -v "$$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$$1" ]; }; \
	if have named && have dig && have nsupdate && have tsig-keygen; then exit 0; fi; \
	echo "bind9: installing $(BIND9_PACKAGES)"; \
	aptget() { $(BIND9_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get "$$@"; }; \
	aptget install -y --no-install-recommends $(BIND9_PACKAGES) || \
	  { aptget update && aptget install -y --no-install-recommends $(BIND9_PACKAGES); } || exit 1; \
	if [ -d /run/systemd/system ]; then \
	  $(BIND9_SUDO) systemctl disable --now named.service >/dev/null 2>&1 || true; \
	else \
	  pidf=/run/named/named.pid; \
	  if [ -f "$$pidf" ]; then \
	    pid=$$(cat "$$pidf"); \
	    if [ -n "$$pid" ] && [ "$$(readlink /proc/$$pid/exe 2>/dev/null)" = /usr/sbin/named ]; then \
	      echo "bind9: stopping the named service the package started (pid $$pid)"; \
	      $(BIND9_SUDO) kill "$$pid"; \
	    fi; \
	  fi; \
	fi; \
	have named && have dig && have nsupdate && have tsig-keygen || \
	  { echo "bind9: named, dig, nsupdate or tsig-keygen still missing after install" >&2; exit 1; }

upstream-crds:
	@$(STACK_ROOT)/hack/upstream-crds.sh

upstream-crds-check:
	@$(STACK_ROOT)/hack/upstream-crds.sh --check
