#!/usr/bin/env bash
# hack/test.sh: what `make test` runs, in two phases, then one closing line "N passed,
# N failed" over both:
#   1. the demo test, alone: `make demo` end to end on a cluster of its own, with a node;
#      a machine has room for one node only (kube-proxy's iptables chains are global), so
#      it runs before the shared cluster starts (it is #[ignore]d in phase 2);
#   2. every test against one shared cluster with its node and the real controllers
#      (hack/with-cluster.sh), started once and always stopped.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib.sh
source "$ROOT/hack/lib.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test -p gatehouse-tests --test demo -- --ignored 2>&1 | tee -a "$log"
((PIPESTATUS[0] == 0)) || status=1
"$ROOT/hack/with-cluster.sh" cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log"
((PIPESTATUS[0] == 0)) || status=1
summarize "$log"
exit "$status"
