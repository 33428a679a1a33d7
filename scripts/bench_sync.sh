#!/usr/bin/env bash
# Peak memory and time of one metadata sync of an N-model manifest (default 10 000):
# a static dbt Cloud (python http.server) serves the generated manifest, the sync runs in
# its own process under /usr/bin/time -v, writing to moto when PRDIFF_TEST_AWS_ENDPOINT is
# set, else to in-memory SQLite. Its figures are in the README (Benchmarks).
set -euo pipefail
N="${1:-10000}"
cd "$(dirname "$0")/.."
cargo build --release -p prdiff-sync --example sync_bench
BIN="${CARGO_TARGET_DIR:-target}/release/examples/sync_bench"
DIR="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" generate "$DIR" "$N"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$DIR" >/dev/null 2>&1 &
SERVER=$!
sleep 1
/usr/bin/time -v "$BIN" run "http://127.0.0.1:$PORT" 2>&1 |
  grep -E '^store|Maximum resident|Elapsed \(wall|User time|System time'
