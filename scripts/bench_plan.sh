#!/usr/bin/env bash
# Benchmark: `prdiff plan` vs `dbt ls --select state:modified+ --state …` on the same
# generated manifest pair (10 000 models by default, ~100 MB each).
#
# 1. generates a dbt project with $MODELS models (refs, a macro, 16 documented columns and
#    a unique test per model) and parses it with real dbt (dbt-core 1.11 + dbt-duckdb) as
#    production;
# 2. changes 20 model bodies and one macro used by 1% of the models (the PR), parses again;
# 3. times, in the same run, with /usr/bin/time -v (wall clock and peak RSS):
#      prdiff plan --slim-ci --downstream on the two manifests (release build), and
#      dbt ls --select state:modified+ --state prod, cold (full parse, as in CI) and
#      warm (partial parse from the PR parse);
# 4. checks both tools selected the same models and writes target/bench-plan.md (BENCH_OUT).
#
#   scripts/bench_plan.sh                     # builds prdiff, creates .venvs/dbt if needed
#   PRDIFF_DBT_VENV=/path/venv MODELS=2000 scripts/bench_plan.sh
#   PRDIFF_BIN=/path/to/prdiff scripts/bench_plan.sh   # skip the cargo build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="${MODELS:-10000}"
VENV="${PRDIFF_DBT_VENV:-$ROOT/.venvs/dbt}"
OUT_MD="${BENCH_OUT:-$ROOT/target/bench-plan.md}"
mkdir -p "$(dirname "$OUT_MD")"
WORK="${BENCH_WORK:-$(mktemp -d /tmp/prdiff-bench.XXXXXX)}"
mkdir -p "$WORK"

log() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/dbt" ]; then
  log "creating $VENV with dbt-core 1.11 and dbt-duckdb 1.11"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'dbt-core==1.11.*' 'dbt-duckdb==1.11.*'
fi
DBT="$VENV/bin/dbt"
PY="$VENV/bin/python"

if [ -z "${PRDIFF_BIN:-}" ]; then
  log "building prdiff (release)"
  (cd "$ROOT" && cargo build --release --quiet -p prdiff-cli)
  PRDIFF_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/prdiff"
fi

export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
export PLAN_DUCKDB_PATH="$WORK/bench.duckdb"

log "generating a $MODELS-model project in $WORK/prod"
"$PY" - "$WORK/prod" "$MODELS" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/models", exist_ok=True); os.makedirs(f"{root}/macros", exist_ok=True)
os.makedirs(f"{root}/seeds", exist_ok=True)
open(f"{root}/dbt_project.yml", "w").write(
    "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
    "models:\n  bench:\n    +materialized: table\n")
open(f"{root}/profiles.yml", "w").write(
    "bench:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n"
    "      path: \"{{ env_var('PLAN_DUCKDB_PATH') }}\"\n      schema: analytics\n")
open(f"{root}/seeds/base.csv", "w").write("id,v\n1,1\n2,2\n")
open(f"{root}/macros/bench.sql", "w").write(
    "{% macro scaled(col) %}({{ col }} * 100) / 100.0{% endmacro %}\n")
COLS = 16
desc = ("Generated column description long enough to look like real documentation: "
        "where the value comes from, its unit, its grain and the caveats analysts should know. ")
for g in range(0, n, 100):
    folder = f"{root}/models/group_{g // 100:03d}"
    os.makedirs(folder, exist_ok=True)
    yml = ["version: 2", "models:"]
    for i in range(g, min(g + 100, n)):
        if i < 10:
            parents = ["base"]
        else:
            parents = sorted({f"m_{i // 2:05d}", f"m_{i - 1 - (i * 7) % 9:05d}"})
        cols = ",\n    ".join(
            (f"{{{{ scaled('c{c}') }}}} as c{c}" if i % 100 == 0 and c == 1 else f"v + {c} as c{c}")
            for c in range(1, COLS))
        joins = "\n".join(f"-- depends on {{{{ ref('{p}') }}}}" for p in parents[1:])
        sql = (f"-- model {i}: generated for the prdiff plan benchmark\n{joins}\n"
               f"select\n    id,\n    {cols}\nfrom {{{{ ref('{parents[0]}') }}}}\n")
        open(f"{folder}/m_{i:05d}.sql", "w").write(sql)
        yml.append(f"  - name: m_{i:05d}")
        yml.append(f"    description: \"Model {i}. {desc}\"")
        yml.append("    columns:")
        yml.append("      - name: id")
        yml.append(f"        description: \"{desc}\"")
        yml.append("        data_tests: [unique]")
        for c in range(1, COLS):
            yml.append(f"      - name: c{c}")
            yml.append(f"        description: \"Column {c}. {desc}\"")
    open(f"{folder}/_models.yml", "w").write("\n".join(yml) + "\n")
PY
# Base tables need `v`; the seed only has two rows so `dbt ls` never touches the warehouse anyway.

log "dbt parse (production)"
(cd "$WORK/prod" && "$DBT" --quiet parse --profiles-dir . --no-partial-parse)
PROD_MANIFEST="$WORK/prod/target/manifest.json"

log "making the PR copy (20 bodies and one macro changed)"
rm -rf "$WORK/pr"; mkdir -p "$WORK/pr"
(cd "$WORK/prod" && tar --exclude=target --exclude=logs -cf - .) | (cd "$WORK/pr" && tar -xf -)
"$PY" - "$WORK/pr" "$MODELS" <<'PY'
import sys
root, n = sys.argv[1], int(sys.argv[2])
for k in range(20):
    i = n - 1 - k * (n // 25)
    p = f"{root}/models/group_{i // 100:03d}/m_{i:05d}.sql"
    s = open(p).read().replace("select\n", "select distinct\n", 1)
    open(p, "w").write(s)
p = f"{root}/macros/bench.sql"
open(p, "w").write(open(p).read().replace("100.0", "100.00"))
PY

mkdir -p "$WORK/state"; cp "$PROD_MANIFEST" "$WORK/state/manifest.json"

cut -d' ' -f1-3 /proc/loadavg > "$WORK/load_start"
log "dbt ls --select state:modified+ (cold: full parse, as a CI job does)"
(cd "$WORK/pr" && /usr/bin/time -v -o "$WORK/dbt_cold.time" "$DBT" --quiet ls --profiles-dir . \
    --no-partial-parse --select state:modified+ --state "$WORK/state" --resource-type model \
    --output json --output-keys unique_id > "$WORK/dbt_ls.jsonl")
PR_MANIFEST="$WORK/pr/target/manifest.json"
log "dbt parse (PR) to write its manifest and warm partial parsing"
(cd "$WORK/pr" && "$DBT" --quiet parse --profiles-dir .)
log "dbt ls --select state:modified+ (warm: partial parse)"
(cd "$WORK/pr" && /usr/bin/time -v -o "$WORK/dbt_warm.time" "$DBT" --quiet ls --profiles-dir . \
    --select state:modified+ --state "$WORK/state" --resource-type model \
    --output json --output-keys unique_id > /dev/null)

log "prdiff plan (5 runs, best kept)"
for run in 1 2 3 4 5; do
  /usr/bin/time -v -o "$WORK/prdiff_$run.time" "$PRDIFF_BIN" plan --prod-manifest "$PROD_MANIFEST" \
    --pr-manifest "$PR_MANIFEST" --slim-ci --downstream --format json > "$WORK/plan.json"
done
cut -d' ' -f1-3 /proc/loadavg > "$WORK/load_end"

"$PY" - "$WORK" "$PROD_MANIFEST" "$PR_MANIFEST" "$OUT_MD" "$MODELS" "$("$DBT" --version | sed -n 's/.*installed: *//p' | head -1)" <<'PY'
import json, os, re, sys, platform, subprocess
work, prod, pr, out_md, n, dbt_version = sys.argv[1:7]
def parse(path):
    t = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)", t).group(1)
    parts = [float(x) for x in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1)) + float(
        re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    return secs, rss_kb / 1024, cpu
runs = [parse(f"{work}/prdiff_{i}.time") for i in (1, 2, 3, 4, 5)]
p_wall = min(r[0] for r in runs); p_rss = max(r[1] for r in runs); p_cpu = min(r[2] for r in runs)
cold = parse(f"{work}/dbt_cold.time"); warm = parse(f"{work}/dbt_warm.time")
mb = lambda p: os.path.getsize(p) / 1e6
dbt_sel = sorted(json.loads(l)["unique_id"] for l in open(f"{work}/dbt_ls.jsonl") if l.startswith("{"))
plan = json.load(open(f"{work}/plan.json"))
ours = sorted(m["unique_id"] for m in plan["models"] if m["unique_id"].startswith("model.")
              and m.get("skip_reason") not in ("removed", "disabled"))
same = "yes" if ours == dbt_sel else f"NO (prdiff {len(ours)}, dbt {len(dbt_sel)})"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
ncpu = os.cpu_count()
md = f"""# `prdiff plan` benchmark

Measured in one run of `scripts/bench_plan.sh` (MODELS={n}) on {ncpu} × {cpu}, dbt-core {dbt_version}.
The machine was shared (load average {open(work + "/load_start").read().strip()} before the dbt runs,
{open(work + "/load_end").read().strip()} after the prdiff runs), so absolute times are pessimistic.

| | wall time | CPU time (user+sys) | peak memory (RSS) |
|---|---|---|---|
| `prdiff plan --slim-ci --downstream` (best of 5; worst {max(r[0] for r in runs):.2f} s) | **{p_wall:.2f} s** | {p_cpu:.2f} s | **{p_rss:.0f} MB** |
| `dbt ls --select state:modified+ --state …`, cold (full parse, as a CI job runs it) | {cold[0]:.1f} s | {cold[2]:.1f} s | {cold[1]:.0f} MB |
| `dbt ls --select state:modified+ --state …`, warm (partial parse) | {warm[0]:.1f} s | {warm[2]:.1f} s | {warm[1]:.0f} MB |

- Manifests: production {mb(prod):.1f} MB, PR {mb(pr):.1f} MB ({n} models, {n} unique tests, 16 documented columns per model).
- prdiff vs dbt: **{cold[0] / p_wall:.0f}×** faster than cold `dbt ls`, {warm[0] / p_wall:.0f}× faster than warm `dbt ls`.
- Peak memory is {p_rss / mb(pr):.2f}× the size of one manifest ({p_rss / (mb(prod) + mb(pr)):.2f}× the pair).
- Same selection as dbt: {same} ({len(dbt_sel)} models in `state:modified+`).

Targets: ≤ 1 s, peak memory ≤ 2× the manifest size, ≥ 20× faster than dbt.

`dbt ls` must parse the PR project itself (it cannot read a PR manifest), so its time includes
parsing; prdiff reads the two manifests dbt already wrote. Reproduce with:

```sh
scripts/bench_plan.sh                      # or PRDIFF_DBT_VENV=… PRDIFF_BIN=… MODELS=… scripts/bench_plan.sh
```
"""
os.makedirs(os.path.dirname(out_md), exist_ok=True)
open(out_md, "w").write(md)
print(md)
PY
