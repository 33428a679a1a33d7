#!/usr/bin/env bash
# BigQuery benchmark on the stand-in (bqemulator, BigQuery's REST API over DuckDB):
# `prdiff diff` against one hand-written single-statement diff (scripts/bench_bigquery.py)
# on the same tables, for PRDIFF_BENCH_ROWS rows (default 100000,1000000). The emulator
# generates the tables itself (one CREATE TABLE … AS SELECT per side).
#
# Two figures for prdiff (median of PRDIFF_BENCH_RUNS, default 3):
# - connected: the bench binary shared/benches/warehouse_diff.rs opens one client, warms
#   it, then times prdiff's whole diff (catalog queries, counts, join, example rows) and the
#   hand-written statement alternately, both as jobs through prdiff's own BigQuery client
#   (request to complete, decoded result). The ratio is of these two.
# - end to end: the `prdiff diff` process (start, every statement).
# Then the bytes BigQuery would process and bill (on-demand: at least 10 MB per table a
# query references) for one scan of both tables and for prdiff's statements, derived from
# the tables' contents by scripts/bench_bigquery.py (the emulator reports 0 bytes).
# PRDIFF_BENCH_PROFILE=dev uses debug builds instead of release ones.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"

BQ_VENV=.venvs/bigquery
if [ ! -x "$BQ_VENV/bin/python" ]; then python3 -m venv "$BQ_VENV"; fi
"$BQ_VENV/bin/python" -c 'import bqemulator, numpy' 2>/dev/null \
  || "$BQ_VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-bigquery.txt -c scripts/constraints-bigquery.txt

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
BENCH=(cargo bench -q -p prdiff-shared --features bigquery --bench warehouse_diff "${BENCH_PROFILE[@]}")
"${BENCH[@]}" --no-run
RUNS="${PRDIFF_BENCH_RUNS:-3}"

WORK="$(mktemp -d /tmp/prdiff-bench-bq.XXXXXX)"
BQ_PID=""
cleanup() {
  if [ -n "$BQ_PID" ]; then kill "$BQ_PID" 2>/dev/null || true; wait "$BQ_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

printf '%-10s %16s %14s %7s %16s\n' rows "prdiff conn (s)" "one stmt (s)" ratio "prdiff e2e (s)"
IFS=',' read -r -a SIZES <<<"${PRDIFF_BENCH_ROWS:-100000,1000000}"
for N in "${SIZES[@]}"; do
  PORT="$(free_port)"
  "$BQ_VENV/bin/python" scripts/bqemulator_launch.py start --rest-port "$PORT" --grpc-port "$(free_port)" \
    --project prdiff-bench --log-level warning >"$WORK/bqemulator-$N.log" 2>&1 &
  BQ_PID=$!
  for _ in $(seq 1 150); do
    if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$PORT)))" 2>/dev/null; then break; fi
    sleep 0.2
  done
  python3 scripts/bench_bigquery.py fill "$PORT" "$N"
  URL="bigquery://prdiff-bench?endpoint=http://127.0.0.1:$PORT"
  # Connected: prdiff's diff and the hand-written statement, same client.
  PRDIFF_BENCH_URL="$URL" PRDIFF_BENCH_PROD=prod.t PRDIFF_BENCH_PR=pr.t PRDIFF_BENCH_PK=id \
    PRDIFF_BENCH_FLOOR_SQL="$(python3 scripts/bench_bigquery.py sql)" PRDIFF_BENCH_REPEATS="$RUNS" \
    "${BENCH[@]}" >"$WORK/connected.json"
  # The same figures from both, or the timing means nothing.
  python3 scripts/bench_bigquery.py check "$WORK/connected.json"
  T=()
  for _ in $(seq 1 "$RUNS"); do
    S=$(date +%s.%N)
    "$BIN" diff --warehouse "$URL" --prod prod.t --pr pr.t --pk id --format json >/dev/null
    E=$(date +%s.%N)
    T+=("$(awk "BEGIN {print $E - $S}")")
  done
  E2E="$(printf '%s\n' "${T[@]}" | median)"
  read -r P B < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["diff_seconds"], d["floor_seconds"])' "$WORK/connected.json")
  printf '%-10s %16.2f %14.2f %6.2fx %16.2f\n' "$N" "$P" "$B" "$(awk "BEGIN {print $P / $B}")" "$E2E"
  python3 scripts/bench_bigquery.py bytes "$PORT" >>"$WORK/bytes.txt"
  kill "$BQ_PID"; wait "$BQ_PID" 2>/dev/null || true; BQ_PID=""
done
echo
python3 - "$WORK/bytes.txt" "${SIZES[@]}" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
print(f"{'rows':<10} {'one scan (MB)':>14} {'prdiff (MB)':>12} {'ratio':>6}   billed: {'one scan':>9} {'prdiff':>7} {'ratio':>6}")
for n, line in zip(sys.argv[2:], lines):
    b = json.loads(line)
    mb = lambda x: x / 1e6
    print(f"{n:<10} {mb(b['one_scan_processed']):>14.2f} {mb(b['prdiff_processed']):>12.2f} "
          f"{b['prdiff_processed'] / b['one_scan_processed']:>5.2f}x   billed: "
          f"{mb(b['one_scan_billed']):>9.2f} {mb(b['prdiff_billed']):>7.2f} "
          f"{b['prdiff_billed'] / b['one_scan_billed']:>5.2f}x")
PY
