#!/usr/bin/env bash
# The diff benchmark behind the README's figures: starts a throw-away PostgreSQL cluster,
# installs reladiff (PyPI, its own venv), and runs the bench binary shared/benches/diff.rs
# for PRDIFF_BENCH_ROWS (default 1000000,10000000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"
RELADIFF_VENV="${RELADIFF_VENV:-$ROOT/.venvs/reladiff}"
if [ ! -x "$RELADIFF_VENV/bin/reladiff" ]; then
  python3 -m venv "$RELADIFF_VENV"
  "$RELADIFF_VENV/bin/pip" install --quiet 'reladiff[postgresql]==0.6.0'
fi
WORK="$(mktemp -d /tmp/prdiff-bench.XXXXXX)"
trap 'pg_stop; rm -rf "$WORK"' EXIT INT TERM
# The same server for every contender: PostgreSQL's own advice for shared_buffers (a
# quarter of the machine's memory), parallel query at its defaults, and a little more
# memory per sort/hash than the stock 4 MB. PRDIFF_BENCH_PG_SETTINGS replaces these, e.g.
# "work_mem=64MB shared_buffers=1GB max_parallel_workers_per_gather=0" (the settings of
# the README's earlier figures).
QUARTER_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 4096 ))
read -r -a SETTINGS <<<"${PRDIFF_BENCH_PG_SETTINGS:-work_mem=64MB shared_buffers=${QUARTER_MB}MB}"
echo "PostgreSQL settings: ${SETTINGS[*]}" >&2
pg_start "$WORK" "${SETTINGS[@]}"
export PRDIFF_BENCH_PG_URL="$PG_URL" RELADIFF="$RELADIFF_VENV/bin/reladiff"
export PRDIFF_BENCH_ROWS="${PRDIFF_BENCH_ROWS:-1000000,10000000}"
cargo bench -p prdiff-shared --bench diff
