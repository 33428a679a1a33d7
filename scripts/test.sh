#!/usr/bin/env bash
# The one test command (README "Run the tests"; .ci/run calls it).
#
# On a fresh machine it: creates ./.venv with the Python tools the tests start (moto,
# fakesnow) and .venvs/{bigquery,brickhouse}, starts a throw-away PostgreSQL cluster, moto's
# server, fakesnow (the Snowflake stand-in), bqemulator (the BigQuery stand-in) and brickhouse
# (the Databricks API stand-in) on free loopback ports,
# runs `cargo fmt --check`, `cargo clippy -D warnings` and every test, and stops what it
# started — also when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"

log() { printf '\n==> %s\n' "$*" >&2; }

WORK="$(mktemp -d /tmp/prdiff-test.XXXXXX)"
chmod 755 "$WORK"
MOTO_PID=""
FAKESNOW_PID=""
BQ_PID=""
BRICKHOUSE_PID=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; fi
  if [ -n "$FAKESNOW_PID" ]; then kill "$FAKESNOW_PID" 2>/dev/null; wait "$FAKESNOW_PID" 2>/dev/null; fi
  if [ -n "$BQ_PID" ]; then kill "$BQ_PID" 2>/dev/null; wait "$BQ_PID" 2>/dev/null; fi
  if [ -n "$BRICKHOUSE_PID" ]; then kill "$BRICKHOUSE_PID" 2>/dev/null; wait "$BRICKHOUSE_PID" 2>/dev/null; fi
  pg_stop
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

log "Python tools (.venv)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
REQ_HASH="$(cat scripts/requirements-test.txt scripts/constraints-test.txt | sha256sum | cut -c1-16)"
if [ "$(cat .venv/.req-hash 2>/dev/null)" != "$REQ_HASH" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt \
    -c scripts/constraints-test.txt
  echo "$REQ_HASH" > .venv/.req-hash
fi
# bqemulator needs an older sqlglot than fakesnow: its own venv.
BQ_VENV=.venvs/bigquery
if [ ! -x "$BQ_VENV/bin/python" ]; then python3 -m venv "$BQ_VENV"; fi
BQ_REQ_HASH="$(cat scripts/requirements-bigquery.txt scripts/constraints-bigquery.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$BQ_VENV/.req-hash" 2>/dev/null)" != "$BQ_REQ_HASH" ]; then
  "$BQ_VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-bigquery.txt \
    -c scripts/constraints-bigquery.txt
  echo "$BQ_REQ_HASH" > "$BQ_VENV/.req-hash"
fi

BH_VENV=.venvs/brickhouse
if [ ! -x "$BH_VENV/bin/python" ]; then mkdir -p .venvs && python3 -m venv "$BH_VENV"; fi
BH_HASH="$(cat scripts/requirements-brickhouse.txt scripts/constraints-brickhouse.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$BH_VENV/.req-hash" 2>/dev/null)" != "$BH_HASH" ]; then
  "$BH_VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-brickhouse.txt \
    -c scripts/constraints-brickhouse.txt
  echo "$BH_HASH" > "$BH_VENV/.req-hash"
fi

log "PostgreSQL (temporary cluster, plain TCP and TLS with a CA made here)"
PG_TLS=1 pg_start "$WORK"
export PRDIFF_TEST_PG_URL="$PG_URL?sslmode=disable"
export PRDIFF_TEST_PG_TLS_URL="postgres://prdiff_tls@localhost:$PG_PORT/postgres?sslmode=verify-full&sslrootcert=$PG_TLS_DIR/ca.crt"
export PRDIFF_TEST_PG_TLS_DIR="$PG_TLS_DIR"

log "moto (AWS stand-in)"
MOTO_PORT="$(free_port)"
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$MOTO_PORT)))" 2>/dev/null; then break; fi
  sleep 0.2
done
export PRDIFF_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
# Redshift IAM authentication loads its AWS settings the standard way: point the Redshift
# API at moto, with dummy credentials (moto accepts any).
export AWS_ENDPOINT_URL_REDSHIFT="$PRDIFF_TEST_AWS_ENDPOINT"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"

log "fakesnow (Snowflake stand-in)"
FAKESNOW_PORT="$(free_port)"
.venv/bin/python scripts/fakesnow_server.py --host 127.0.0.1 --port "$FAKESNOW_PORT" >"$WORK/fakesnow.log" 2>&1 &
FAKESNOW_PID=$!
for _ in $(seq 1 150); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$FAKESNOW_PORT)))" 2>/dev/null; then break; fi
  if ! kill -0 "$FAKESNOW_PID" 2>/dev/null; then cat "$WORK/fakesnow.log"; exit 1; fi
  sleep 0.2
done
export PRDIFF_TEST_SNOWFLAKE_URL="snowflake://prdiff:test@fakesnow/PRDIFF?host=127.0.0.1&port=$FAKESNOW_PORT&protocol=http"

log "bqemulator (BigQuery stand-in: its REST API over DuckDB)"
BQ_PORT="$(free_port)"
BQ_GRPC_PORT="$(free_port)"
"$BQ_VENV/bin/python" scripts/bqemulator_launch.py start --rest-port "$BQ_PORT" --grpc-port "$BQ_GRPC_PORT" \
  --project prdiff-test --log-level warning >"$WORK/bqemulator.log" 2>&1 &
BQ_PID=$!
BQ_READY=""
for _ in $(seq 1 150); do
  if python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$BQ_PORT/bigquery/v2/projects/prdiff-test/queries', data=b'{\"query\":\"SELECT 1\",\"useLegacySql\":false}', headers={'content-type': 'application/json'}), timeout=5)" 2>/dev/null; then
    BQ_READY=1
    break
  fi
  sleep 0.2
done
if [ -z "$BQ_READY" ]; then cat "$WORK/bqemulator.log" >&2; echo "bqemulator did not start" >&2; exit 1; fi
# A loopback endpoint: the driver fetches no Google token for it.
export PRDIFF_TEST_BIGQUERY_URL="bigquery://prdiff-test?endpoint=http://127.0.0.1:$BQ_PORT"

log "brickhouse (Databricks API stand-in: the driver's protocol, not the diff SQL)"
BRICKHOUSE_PORT="$(free_port)"
"$BH_VENV/bin/brickhouse" init --workspace "$WORK/brickhouse" >"$WORK/brickhouse.log" 2>&1
"$BH_VENV/bin/brickhouse" serve --workspace "$WORK/brickhouse" --host 127.0.0.1 --port "$BRICKHOUSE_PORT" >>"$WORK/brickhouse.log" 2>&1 &
BRICKHOUSE_PID=$!
for _ in $(seq 1 150); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$BRICKHOUSE_PORT)))" 2>/dev/null; then break; fi
  if ! kill -0 "$BRICKHOUSE_PID" 2>/dev/null; then cat "$WORK/brickhouse.log"; exit 1; fi
  sleep 0.2
done
export PRDIFF_TEST_DATABRICKS_API="http://127.0.0.1:$BRICKHOUSE_PORT"

log "cfn-lint infra/template.yaml"
.venv/bin/cfn-lint infra/template.yaml

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
cargo test --workspace --locked --no-fail-fast
