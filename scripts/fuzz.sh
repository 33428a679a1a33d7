#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read untrusted input (fuzz/README.md):
# webhook deliveries, dbt artifacts, configuration files.
#
#   scripts/fuzz.sh                  each target for 60 seconds
#   scripts/fuzz.sh 300              each target for 300 seconds
#   scripts/fuzz.sh --runs 1000000   each target for 1,000,000 executions
#   scripts/fuzz.sh 60 manifest      only the named targets
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly compiler flags; on a stable
# toolchain RUSTC_BOOTSTRAP=1 allows them. FUZZ_SANITIZER picks the sanitizer (default
# `address`; `none` builds faster and runs ~2x faster, still coverage-guided).
# The corpus a run grows goes to fuzz/target/corpus/<target> (ignored by git); the seeds in
# fuzz/corpus/<target> are read, never written. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit 1.
#
# Not part of scripts/test.sh: it takes minutes and a separate (instrumented) build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGETS_ALL=(webhook manifest config filter)
SANITIZER="${FUZZ_SANITIZER:-address}"

usage() {
  sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

limit=(-max_total_time=60)
what="60 s"
if [ $# -gt 0 ]; then
  case "$1" in
    --runs)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || usage
      limit=("-runs=$2"); what="$2 runs"; shift 2 ;;
    -h|--help) usage ;;
    *)
      [[ "$1" =~ ^[0-9]+$ ]] || usage
      limit=("-max_total_time=$1"); what="$1 s"; shift ;;
  esac
fi
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${TARGETS_ALL[@]}"); fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

echo "==> building fuzz targets (sanitizer: $SANITIZER)" >&2
for t in "${TARGETS[@]}"; do cargo fuzz build -s "$SANITIZER" "$t"; done

LOGS="fuzz/target/logs"
mkdir -p "$LOGS"
failed=0
summary=()
for t in "${TARGETS[@]}"; do
  echo "==> fuzzing $t ($what)" >&2
  mkdir -p "fuzz/target/corpus/$t"
  log="$LOGS/$t.log"
  start=$(date +%s.%N)
  set +e
  cargo fuzz run -s "$SANITIZER" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
    "${limit[@]}" -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ "$rc" = 0 ]; then
    result="ok"
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $rc${artifact:+, input: $artifact}; log: $log)"
    tail -40 "$log" >&2
  fi
  summary+=("$(printf '%-10s %12s execs %8s s %8s exec/s  cov %6s  rss %5s MB  %s' \
    "$t" "${execs:-?}" "$wall" "${rate:-?}" "${cov:-?}" "${rss:-?}" "$result")")
done

echo
echo "fuzz summary ($what per target, sanitizer $SANITIZER):"
printf '  %s\n' "${summary[@]}"
exit $failed
