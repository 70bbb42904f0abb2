# hack/images.mk: the project's OCI images, built locally without a container daemon.
#
# Included by the top-level Makefile. No registry is reachable here and there is no Docker:
# buildah builds each image FROM scratch into its own storage under a cache directory
# outside the repo (vfs driver, nothing under /var/lib/containers) and writes an OCI
# archive, which the node harness imports into containerd (hack/node-import.sh).
# See hack/images.sh for the details and shared/design/real-stack.md.
#
# Targets:
#   image            the operator: a static release binary in an empty image
#                    ($(OPERATOR_IMAGE_ARCHIVE), digest next to it); rebuilt only when the
#                    binary changed
#   backend-image    the e2e test backend (tests/images/backend): answers with its pod name,
#                    host and path on every port of $$PORTS; built once per source hash into
#                    $(IMAGES_CACHE)
#   oauth2-proxy-image  OAuth2 Proxy (the static $$OAUTH2_PROXY_BIN) for the sample sets'
#                    sign-in workload; built once per binary into $(IMAGES_CACHE)
#   images-verify    run both images with runc, without a cluster (as uid 65532, read-only
#                    root filesystem)
#   image-paths      print the three archive paths (make -s image-paths)
#   buildah          install Debian's buildah if missing
#   runc             install Debian's runc if missing (images-verify only)

IMAGES_ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
IMAGES_CACHE ?= $(abspath $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gatehouse)
export IMAGES_CACHE

IMAGES_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# apt_install TOOL,PACKAGE: install PACKAGE when TOOL is not on the PATH; `apt-get update`
# only when the first attempt fails (stale or missing lists).
define apt_install
	@command -v $(1) >/dev/null 2>&1 || { \
	  echo "$(1): installing Debian package $(2)"; \
	  aptget() { $(IMAGES_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$$@"; }; \
	  aptget install -y --no-install-recommends $(2) || \
	    { aptget update && aptget install -y --no-install-recommends $(2); }; \
	  command -v $(1) >/dev/null 2>&1 || { echo "$(1): still missing after installing $(2)" >&2; exit 1; }; \
	}
endef

.PHONY: buildah runc image backend-image oauth2-proxy-image images-verify image-paths

# buildah without its recommends: builds from scratch never run a container, so neither
# runc/crun nor fuse-overlayfs is needed (the storage driver is vfs).
buildah:
	$(call apt_install,buildah,buildah)

runc:
	$(call apt_install,runc,runc)

image: buildah
	@CARGO=$(CARGO) $(IMAGES_ROOT)/hack/images.sh operator

backend-image: buildah
	@$(IMAGES_ROOT)/hack/images.sh backend

oauth2-proxy-image: buildah oauth2-proxy-bin
	@$(IMAGES_ROOT)/hack/images.sh oauth2-proxy

images-verify: image backend-image runc
	@$(IMAGES_ROOT)/hack/images.sh verify

image-paths:
	@$(IMAGES_ROOT)/hack/images.sh paths
