#!/usr/bin/env bash
# hack/cargo-test.sh ARGS...: cargo test over every target (not doc tests, which we have
# none of), then one closing line "N passed, N failed" summed over all test binaries, so the
# last line of a run says what ran.
set -uo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summarize "$log"
exit "$status"
