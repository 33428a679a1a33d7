#!/usr/bin/env bash
# Snowflake benchmark on the stand-in (fakesnow over DuckDB): `prdiff diff` against one
# hand-written single-statement diff (scripts/bench_snowflake.py) on the same tables, for
# PRDIFF_BENCH_ROWS rows (default 100000,1000000). The tables are written straight into the
# DuckDB file fakesnow then serves (loading through the connector is slow).
#
# Two figures for prdiff (median of PRDIFF_BENCH_RUNS, default 3):
# - connected: the bench binary shared/benches/warehouse_diff.rs opens one connection,
#   warms it, then times prdiff's whole diff (column lookups, counts, join, example rows)
#   and the hand-written statement alternately, both through prdiff's own Snowflake client
#   (request, execute, fetch and decode; no login). The ratio is of these two.
# - end to end: the `prdiff diff` process (start, logins, every statement).
# PRDIFF_BENCH_PROFILE=dev uses debug builds instead of release ones.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -c 'import fakesnow, duckdb, snowflake.connector' 2>/dev/null \
  || .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt -c scripts/constraints-test.txt

PROFILE="${PRDIFF_BENCH_PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build -p prdiff-cli --bin prdiff
  BIN="${CARGO_TARGET_DIR:-target}/debug/prdiff"
  BENCH_PROFILE=(--profile dev)
else
  cargo build --release -p prdiff-cli --bin prdiff
  BIN="${CARGO_TARGET_DIR:-target}/release/prdiff"
  BENCH_PROFILE=()
fi
BENCH=(cargo bench -q -p prdiff-shared --features snowflake --bench warehouse_diff "${BENCH_PROFILE[@]}")
"${BENCH[@]}" --no-run
RUNS="${PRDIFF_BENCH_RUNS:-3}"

WORK="$(mktemp -d /tmp/prdiff-bench-sf.XXXXXX)"
FAKESNOW_PID=""
cleanup() {
  if [ -n "$FAKESNOW_PID" ]; then kill "$FAKESNOW_PID" 2>/dev/null || true; wait "$FAKESNOW_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

printf '%-10s %16s %14s %7s %16s\n' rows "prdiff conn (s)" "one stmt (s)" ratio "prdiff e2e (s)"
IFS=',' read -r -a SIZES <<<"${PRDIFF_BENCH_ROWS:-100000,1000000}"
for N in "${SIZES[@]}"; do
  DB="$WORK/db-$N"; mkdir -p "$DB"
  .venv/bin/python scripts/bench_snowflake.py fill "$DB" "$N"
  PORT="$(free_port)"
  .venv/bin/python scripts/fakesnow_server.py --port "$PORT" --db-path "$DB" >"$WORK/fakesnow-$N.log" 2>&1 &
  FAKESNOW_PID=$!
  for _ in $(seq 1 150); do
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$PORT)))" 2>/dev/null; then break; fi
    sleep 0.2
  done
  URL="snowflake://prdiff:bench@fakesnow/PRDIFF?host=127.0.0.1&port=$PORT&protocol=http"
  # Connected: prdiff's diff and the hand-written statement, same client, same session pool.
  PRDIFF_BENCH_URL="$URL" PRDIFF_BENCH_PROD=prod.t PRDIFF_BENCH_PR=pr.t PRDIFF_BENCH_PK=id \
    PRDIFF_BENCH_FLOOR_SQL="$(.venv/bin/python scripts/bench_snowflake.py sql)" PRDIFF_BENCH_REPEATS="$RUNS" \
    "${BENCH[@]}" >"$WORK/connected.json"
  # The same figures from both, or the timing means nothing.
  .venv/bin/python scripts/bench_snowflake.py check "$WORK/connected.json"
  T=()
  for _ in $(seq 1 "$RUNS"); do
    S=$(date +%s.%N)
    "$BIN" diff --warehouse "$URL" --prod prod.t --pr pr.t --pk id --format json >/dev/null
    E=$(date +%s.%N)
    T+=("$(awk "BEGIN {print $E - $S}")")
  done
  E2E="$(printf '%s\n' "${T[@]}" | median)"
  read -r P B < <(.venv/bin/python -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["diff_seconds"], d["floor_seconds"])' "$WORK/connected.json")
  printf '%-10s %16.2f %14.2f %6.2fx %16.2f\n' "$N" "$P" "$B" "$(awk "BEGIN {print $P / $B}")" "$E2E"
  kill "$FAKESNOW_PID"; wait "$FAKESNOW_PID" 2>/dev/null || true; FAKESNOW_PID=""
done
