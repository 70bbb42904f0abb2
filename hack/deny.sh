#!/usr/bin/env bash
# hack/deny.sh [update [SOURCE]]: cargo-deny over deny.toml, offline.
#   (no argument)   licenses, bans and sources; advisories too when the RustSec database is
#                   at $ADVISORY_DB, else a line saying they were skipped. Crates come from
#                   crates.io (`cargo fetch`); the database is never fetched here.
#   update SOURCE   clone or update the database from SOURCE (a git URL or a local clone).
# CARGO_DENY (the binary) and ADVISORY_DB (the database root) come from the Makefile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${CARGO_DENY:?set by the Makefile}" "${ADVISORY_DB:?set by the Makefile}"
export ADVISORY_DB
# cargo-deny's directory for its default database URL (a hash of it), under db-path.
db="$ADVISORY_DB/advisory-db-3157b0e258782691"

if [[ ${1:-} == update ]]; then
	source=${2:?usage: hack/deny.sh update SOURCE}
	if [[ -d $db/.git ]]; then
		git -C "$db" fetch -q "$source" HEAD
		git -C "$db" reset -q --hard FETCH_HEAD
	else
		mkdir -p "$ADVISORY_DB"
		git clone -q "$source" "$db"
	fi
	# cargo-deny takes FETCH_HEAD's time as the database's age; without it, it takes the
	# newest commit's, which is the age of the data whatever it was copied from.
	rm -f "$db/.git/FETCH_HEAD"
	echo "advisories: database at $db, last commit $(git -C "$db" show -s --format=%cs HEAD)"
	exit 0
fi

# Metadata covers every platform's crates; fetch them (crates.io) so the check can run --frozen.
cargo fetch --locked --quiet
checks=(bans licenses sources)
if git -C "$db" rev-parse -q --verify HEAD >/dev/null 2>&1; then
	rm -f "$db/.git/FETCH_HEAD"
	days=$((($(date +%s) - $(git -C "$db" show -s --format=%ct HEAD)) / 86400))
	echo "advisories: database at $db, last commit $(git -C "$db" show -s --format=%cs HEAD) ($days days old)"
	if ((days > 90)); then
		echo "advisories: warning: advisories published in the last $days days are not in it (make advisory-db)"
	fi
	checks+=(advisories)
else
	echo "advisories: skipped, no database at $db (make advisory-db ADVISORY_DB_SOURCE=<git URL or clone>)"
fi
exec "$CARGO_DENY" --frozen check --show-stats "${checks[@]}"
