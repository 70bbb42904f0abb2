#!/usr/bin/env bash
# hack/cargo-test.sh ARGS...: cargo test over every target (not doc tests, which we have
# none of), then one closing line "N passed, N failed" summed over all test binaries, so the
# last line of a run says what ran.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
