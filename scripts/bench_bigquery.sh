#!/usr/bin/env bash
# BigQuery benchmark on the stand-in (bqemulator, BigQuery's REST API over DuckDB):
# `prdiff diff` against one hand-written single-statement diff (scripts/bench_bigquery.py)
# on the same tables, for PRDIFF_BENCH_ROWS rows (default 100000,1000000). The emulator
# generates the tables itself (one CREATE TABLE … AS SELECT per side).
#
# prdiff is timed end to end (process start, catalog queries, every statement); the
# hand-written statement from request to complete result. Median of PRDIFF_BENCH_RUNS
# (default 3). PRDIFF_BENCH_PROFILE=dev uses a debug build instead of --release.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"

BQ_VENV=.venvs/bigquery
if [ ! -x "$BQ_VENV/bin/python" ]; then python3 -m venv "$BQ_VENV"; fi
"$BQ_VENV/bin/python" -c 'import bqemulator, numpy' 2>/dev/null \
  || "$BQ_VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-bigquery.txt

PROFILE="${PRDIFF_BENCH_PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build -p prdiff-cli --bin prdiff
  BIN="${CARGO_TARGET_DIR:-target}/debug/prdiff"
else
  cargo build --release -p prdiff-cli --bin prdiff
  BIN="${CARGO_TARGET_DIR:-target}/release/prdiff"
fi
RUNS="${PRDIFF_BENCH_RUNS:-3}"

WORK="$(mktemp -d /tmp/prdiff-bench-bq.XXXXXX)"
BQ_PID=""
cleanup() {
  if [ -n "$BQ_PID" ]; then kill "$BQ_PID" 2>/dev/null || true; wait "$BQ_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

printf '%-10s %12s %14s %7s\n' rows "prdiff (s)" "one stmt (s)" ratio
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
  # The same figures from both, or the timing means nothing.
  "$BIN" diff --warehouse "$URL" --prod prod.t --pr pr.t --pk id --format json >"$WORK/prdiff.json"
  BASE="$(python3 scripts/bench_bigquery.py baseline "$PORT" "$RUNS")"
  python3 - "$WORK/prdiff.json" "$BASE" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); b = json.loads(sys.argv[2])["figures"]
got = {"prod_rows": r["rows"]["prod"], "pr_rows": r["rows"]["pr"],
       "only_prod": r["exclusive"]["prod"], "only_pr": r["exclusive"]["pr"],
       "matched": r["matched"], "changed": r["changed"],
       **{c["name"]: c["changed"] for c in r["columns"]}}
if got != b:
    sys.exit(f"prdiff and the hand-written statement disagree:\n{got}\n{b}")
PY
  T=()
  for _ in $(seq 1 "$RUNS"); do
    S=$(date +%s.%N)
    "$BIN" diff --warehouse "$URL" --prod prod.t --pr pr.t --pk id --format json >/dev/null
    E=$(date +%s.%N)
    T+=("$(awk "BEGIN {print $E - $S}")")
  done
  P="$(printf '%s\n' "${T[@]}" | median)"
  B="$(echo "$BASE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')"
  printf '%-10s %12.2f %14.2f %6.2fx\n' "$N" "$P" "$B" "$(awk "BEGIN {print $P / $B}")"
  kill "$BQ_PID"; wait "$BQ_PID" 2>/dev/null || true; BQ_PID=""
done
