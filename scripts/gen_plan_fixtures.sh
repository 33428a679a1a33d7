#!/usr/bin/env bash
# Regenerates tests/fixtures/plan/ from examples/plan_project with real dbt.
#
# Production: `dbt build` of the project as is (target `prod`, schema `analytics`).
# Each PR scenario: a copy of the project with one change, built the way a dbt Cloud CI
# job builds a PR (`dbt build --select state:modified+ --defer --state <prod>`, schema
# `dbt_cloud_pr_4242_<n>`), then dbt's own answer recorded:
#   expected/state_modified.txt       `dbt ls --select state:modified  --state <prod>`
#   expected/state_modified_plus.txt  `dbt ls --select state:modified+ --state <prod>`
# (unique ids, sorted). The Rust tests compare `prdiff plan` with these files, so they
# need no Python at test time.
#
# dbt comes from PyPI (dbt-core 1.11 + dbt-duckdb 1.11) in .venvs/dbt, created on first
# use. Set PRDIFF_DBT_VENV to reuse an existing virtualenv that has both installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="$ROOT/examples/plan_project"
OUT="$ROOT/tests/fixtures/plan"
VENV="${PRDIFF_DBT_VENV:-$ROOT/.venvs/dbt}"

log() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/dbt" ]; then
  log "creating $VENV with dbt-core 1.11 and dbt-duckdb 1.11"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'dbt-core==1.11.*' 'dbt-duckdb==1.11.*'
fi
DBT="$VENV/bin/dbt"
PY="$VENV/bin/python"
"$DBT" --version | head -3 >&2

WORK="$(mktemp -d /tmp/prdiff-plan-gen.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export PLAN_DUCKDB_PATH="$WORK/warehouse.duckdb"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
export DO_NOT_TRACK=1

rm -rf "$OUT"
mkdir -p "$OUT"

# Copies the project without build output.
copy_project() {
  mkdir -p "$2"
  (cd "$1" && tar --exclude=target --exclude=logs --exclude='*.duckdb*' -cf - .) | (cd "$2" && tar -xf -)
}

# dbt ls over the state comparison, reduced to sorted unique ids.
record_ls() { # <project dir> <selector> <output file>
  (cd "$1" && "$DBT" --quiet ls --profiles-dir . --target pr --select "$2" --state "$WORK/prod/target" \
      --output json --output-keys unique_id) \
    | "$PY" -c 'import json,sys; print("\n".join(sorted(json.loads(l)["unique_id"] for l in sys.stdin if l.strip().startswith("{"))))' \
    > "$3"
}

# Keeps what the tests read; drops the (large, unused) compiled SQL and graph files.
keep_artifacts() { # <project dir> <destination dir>
  mkdir -p "$2"
  cp "$1/target/manifest.json" "$2/manifest.json"
  cp "$1/target/run_results.json" "$2/run_results.json"
}

log "production build"
copy_project "$PROJECT" "$WORK/prod"
(cd "$WORK/prod" && "$DBT" --quiet build --profiles-dir . --target prod) >&2
keep_artifacts "$WORK/prod" "$OUT/prod"

# One function per scenario: each edits the copy in the current directory.
scenario_body() { "$PY" - <<'PY'
p = "models/staging/stg_orders.sql"
s = open(p).read().replace("status\n", "lower(status) as status\n")
open(p, "w").write(s)
PY
}
scenario_config() { "$PY" - <<'PY'
p = "models/reporting/daily_revenue.sql"
s = open(p).read()
open(p, "w").write("{{ config(materialized='view') }}\n" + s)
PY
}
scenario_macro() { "$PY" - <<'PY'
p = "macros/money.sql"
s = open(p).read().replace("round({{ expr }}, 2)", "round({{ expr }}, 4)")
open(p, "w").write(s)
PY
}
scenario_contract() { "$PY" - <<'PY'
p = "models/marts/_marts.yml"
s = open(p).read().replace(
    "      - name: first_name\n        data_type: varchar\n",
    "      - name: first_name\n        data_type: varchar\n        constraints: [{type: not_null}]\n")
open(p, "w").write(s)
PY
}
scenario_relation() { "$PY" - <<'PY'
p = "models/finance/order_totals.sql"
s = open(p).read().replace("alias='order_totals_v'", "alias='order_totals_daily'")
open(p, "w").write(s)
PY
}
scenario_new_model() { "$PY" - <<'PY'
open("models/reporting/orders_by_status.sql", "w").write(
    "select status, count(*) as orders from {{ ref('orders') }} group by status\n")
PY
}
scenario_removed_model() { "$PY" - <<'PY'
import os
os.remove("models/marts/legacy_report.sql")
p = "models/marts/_marts.yml"
s = open(p).read().replace("  - name: legacy_report\n    description: Kept for an old dashboard.\n", "")
open(p, "w").write(s)
PY
}
scenario_seed() { "$PY" - <<'PY'
p = "seeds/raw_payments.csv"
s = open(p).read().replace("3,3,coupon,100,", "3,3,coupon,150,")
open(p, "w").write(s)
PY
}
scenario_tags_meta() { "$PY" - <<'PY'
# Tags and column-level meta only: dbt does not count these as modifications.
p = "models/marts/_marts.yml"
s = open(p).read()
s = s.replace('      tags: ["finance"]\n', '      tags: ["finance", "core"]\n')
s = s.replace("      - name: customer_id\n  - name: customer_orders",
              "      - name: customer_id\n        meta: {owner: sales}\n  - name: customer_orders")
open(p, "w").write(s)
PY
}
scenario_model_meta() { "$PY" - <<'PY'
# Model-level meta is part of the unrendered config: dbt counts it as a config change.
p = "models/marts/_marts.yml"
s = open(p).read().replace('filter: "amount >= 0"', 'filter: "amount > 0"')
open(p, "w").write(s)
PY
}
scenario_description() { "$PY" - <<'PY'
# No persist_docs on stg_customers: a description change is not a modification.
p = "models/staging/_staging.yml"
s = open(p).read().replace("One row per customer, renamed from the raw seed.", "One row per customer.")
open(p, "w").write(s)
PY
}
scenario_description_persisted() { "$PY" - <<'PY'
# payments_summary persists docs: the description reaches the warehouse, so it counts.
p = "models/finance/_finance.yml"
s = open(p).read().replace("How the customer paid.", "Payment method as recorded by the processor.")
open(p, "w").write(s)
PY
}

scenario_source() { "$PY" - <<'PY'
# A source's freshness column changed: dbt counts the source as modified (state:modified),
# and the models reading it as downstream (state:modified+).
p = "models/staging/_sources.yml"
s = open(p).read().replace("loaded_at_field: paid_at", "loaded_at_field: order_id")
open(p, "w").write(s)
PY
}
scenario_source_docs() { "$PY" - <<'PY'
# A source's description only: not a modification for dbt.
p = "models/staging/_sources.yml"
s = open(p).read().replace("Payments as the processor exports them.", "Payments as exported.")
open(p, "w").write(s)
PY
}
scenario_source_meta() { "$PY" - <<'PY'
# A source's meta: since dbt 1.10 meta is config, so dbt counts it as a modification
# (unlike model tags or column meta).
p = "models/staging/_sources.yml"
s = open(p).read().replace("        loaded_at_field: paid_at\n",
                           "        loaded_at_field: paid_at\n        meta: {owner: payments}\n")
open(p, "w").write(s)
PY
}

scenario_snapshot() { "$PY" - <<'PY'
# A snapshot's config changed (which columns it checks): dbt counts it as modified.
p = "snapshots/orders_snapshot.yml"
s = open(p).read().replace("check_cols: [status]", "check_cols: [status, order_date]")
open(p, "w").write(s)
PY
}

SCENARIOS=(body config macro contract relation new_model removed_model seed tags_meta model_meta description description_persisted source source_docs source_meta snapshot)
n=0
for s in "${SCENARIOS[@]}"; do
  n=$((n + 1))
  log "scenario $s"
  dir="$WORK/$s"
  copy_project "$PROJECT" "$dir"
  (cd "$dir" && "scenario_$s")
  export PLAN_PR_SCHEMA="dbt_cloud_pr_4242_$n"
  (cd "$dir" && "$DBT" --quiet build --profiles-dir . --target pr --select state:modified+ --defer --state "$WORK/prod/target") >&2
  keep_artifacts "$dir" "$OUT/$s"
  mkdir -p "$OUT/$s/expected"
  record_ls "$dir" state:modified "$OUT/$s/expected/state_modified.txt"
  record_ls "$dir" state:modified+ "$OUT/$s/expected/state_modified_plus.txt"
  "$DBT" --version 2>/dev/null | sed -n 's/.*installed: *//p' | head -1 > "$OUT/$s/expected/dbt_version.txt"
done

log "done: $(du -sh "$OUT" | cut -f1) in $OUT"
