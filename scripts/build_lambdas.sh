#!/usr/bin/env bash
# Builds every Lambda binary for arm64 Lambda (aarch64-unknown-linux-gnu) in release, the
# way `sam build` does (`cargo lambda build --release --arm64`), and prints each binary's
# size. The release profile (strip, LTO, one codegen unit, opt-level "s", panic abort) is
# in the workspace Cargo.toml.
#
# Installs what it needs on a fresh machine: cargo-lambda and zig (the cross linker) from
# PyPI into .venvs/lambda-build, and the aarch64 standard library with rustup.
#
#   scripts/build_lambdas.sh              # every function crate that exists
#   CARGO_TARGET_DIR=/work/target-lambda scripts/build_lambdas.sh
#
# Binaries land in $CARGO_TARGET_DIR/lambda/<bin>/bootstrap (default target dir: ./target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\n==> %s\n' "$*" >&2; }

# The four Lambda functions: crate directory under functions/ and its binary (= package) name.
FUNCTIONS=(
  "webhook prdiff-webhook"
  "poller prdiff-poller"
  "diff prdiff-diff"
  "sync prdiff-sync"
)

VENV="$ROOT/.venvs/lambda-build"
log "cargo-lambda and zig ($VENV)"
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check cargo-lambda ziglang
fi
export PATH="$VENV/bin:$PATH"
cargo lambda --version

log "aarch64 target"
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TARGET_DIR="$TARGET_DIR"

packages=()
bins=()
missing=()
for f in "${FUNCTIONS[@]}"; do
  read -r dir bin <<<"$f"
  if [ -f "functions/$dir/Cargo.toml" ]; then
    packages+=(--package "$bin")
    bins+=("$bin")
  else
    missing+=("functions/$dir")
  fi
done
if [ "${#bins[@]}" -eq 0 ]; then
  echo "no function crate found under functions/" >&2
  exit 1
fi

# One cargo invocation for all functions: shared dependencies compile once.
log "cargo lambda build --release --arm64 ${bins[*]}"
start=$(date +%s)
cargo lambda build --release --arm64 --locked "${packages[@]}"
log "built in $(( $(date +%s) - start )) s"

log "binary sizes (stripped, aarch64)"
printf '%-18s %12s %10s  %s\n' binary bytes MiB path
for bin in "${bins[@]}"; do
  path="$TARGET_DIR/lambda/$bin/bootstrap"
  if [ ! -f "$path" ]; then
    echo "missing: $path" >&2
    exit 1
  fi
  bytes=$(stat -c %s "$path")
  printf '%-18s %12d %10s  %s\n' "$bin" "$bytes" "$(awk "BEGIN{printf \"%.2f\", $bytes/1048576}")" "$path"
  file "$path" 2>/dev/null | sed 's/^/    /' || true
done
for m in "${missing[@]}"; do echo "not built (crate does not exist yet): $m"; done
