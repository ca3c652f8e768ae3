#!/usr/bin/env bash
# The library suites once more, against a real Citus cluster: a coordinator and two workers on this
# machine (../shared/citus: Citus 13 built for PostgreSQL 15; see its README). Every new table is
# then distributed (seqload's default, distribute "auto"), test/citus.test.ts joins in, and each
# test database is created on all three nodes (test/helpers/db.ts). Runs only when that folder and
# PostgreSQL 15's initdb/pg_ctl are present; installing Citus into that server needs root.
# Called by .ci/run after `npm test` (so dist/ is built); SEQLOAD_CITUS_DIR overrides the folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

citus=${SEQLOAD_CITUS_DIR:-../shared/citus}
if [ ! -f "$citus/cluster.sh" ] || ! command -v initdb > /dev/null || ! command -v pg_ctl > /dev/null; then
  echo "citus: skipped (no $citus/cluster.sh, or no initdb/pg_ctl on PATH)"
  exit 0
fi
if ! initdb --version | grep -q ' 15\.'; then
  echo "citus: skipped (the Citus build in $citus is for PostgreSQL 15; initdb is $(initdb --version))"
  exit 0
fi

if [ "$(id -u)" = 0 ]; then
  bash "$citus/install.sh"
elif ! bash "$citus/install.sh"; then
  echo "citus: skipped (installing Citus into PostgreSQL 15 needs root)"
  exit 0
fi
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000)) # the workers take the next two ports
trap 'bash "$citus/cluster.sh" stop "$dir/citus" || true; rm -rf "$dir"' EXIT
url=$(bash "$citus/cluster.sh" start "$dir/citus" "$port")
# 4 shards per distributed table instead of Citus's 32: still spread over both workers, and the
# hundreds of tables the suites create are made in a fraction of the time on 2 shared cores.
PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$url" \
  -c "ALTER SYSTEM SET citus.shard_count = 4" -c "SELECT pg_reload_conf()" > /dev/null

echo "Again against Citus ($url, two workers), new tables distributed:"
# Excluded, as in the PostgreSQL 15 run: the CLI suites (they test the CLI, not the server).
SEQLOAD_TEST_DATABASE_URL="$url" SEQLOAD_TEST_CITUS=1 npx vitest run --exclude 'test/cli*.test.ts' < /dev/null
