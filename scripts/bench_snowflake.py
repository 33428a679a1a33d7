"""Helpers for scripts/bench_snowflake.sh (run with the test venv's python).

  fill DIR ROWS        writes DIR/PRDIFF.db (DuckDB) with PROD.T and PR.T of ROWS rows
  sql                  prints the hand-written single-statement diff
  check FILE           checks that the bench binary's output (FILE) has the same figures
                       from prdiff and from the hand-written statement
"""

import json
import sys

# The PR side: every 100th row's QTY + 1, every 250th row's LABEL changed, every 1000th
# row (id % 1000 = 1) removed, 100 new rows after the last id.
FILL = """
CREATE SCHEMA PROD;
CREATE SCHEMA PR;
CREATE TABLE PROD.T (ID BIGINT, QTY INTEGER, LABEL VARCHAR, PRICE DECIMAL(12,2), DAY DATE);
CREATE TABLE PR.T (ID BIGINT, QTY INTEGER, LABEL VARCHAR, PRICE DECIMAL(12,2), DAY DATE);
INSERT INTO PROD.T SELECT i, CAST((i * 7) % 1000 AS INTEGER), 'label-' || (i % 97),
    CAST((i % 10000) / 100.0 AS DECIMAL(12,2)), DATE '2024-01-01' + CAST(i % 365 AS INTEGER)
    FROM range(1, {n} + 1) t(i);
INSERT INTO PR.T SELECT ID,
    CASE WHEN ID % 100 = 0 THEN QTY + 1 ELSE QTY END,
    CASE WHEN ID % 250 = 0 THEN LABEL || 'x' ELSE LABEL END, PRICE, DAY
    FROM PROD.T WHERE ID % 1000 <> 1;
INSERT INTO PR.T SELECT i, 1, 'new', 1.00, DATE '2025-01-01' FROM range({n} + 1, {n} + 101) t(i);
"""

# What prdiff reports for an exact diff, in one statement: rows per side, keys only on
# one side, matched and changed rows, changed rows per column.
BASELINE = """
SELECT COUNT(p.ID) AS prod_rows, COUNT(q.ID) AS pr_rows,
  COUNT_IF(q.ID IS NULL) AS only_prod, COUNT_IF(p.ID IS NULL) AS only_pr,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL) AS matched,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL AND (p.QTY IS DISTINCT FROM q.QTY
    OR p.LABEL IS DISTINCT FROM q.LABEL OR p.PRICE IS DISTINCT FROM q.PRICE
    OR p.DAY IS DISTINCT FROM q.DAY)) AS changed,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL AND p.QTY IS DISTINCT FROM q.QTY) AS qty,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL AND p.LABEL IS DISTINCT FROM q.LABEL) AS label,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL AND p.PRICE IS DISTINCT FROM q.PRICE) AS price,
  COUNT_IF(p.ID IS NOT NULL AND q.ID IS NOT NULL AND p.DAY IS DISTINCT FROM q.DAY) AS day
FROM PROD.T p FULL OUTER JOIN PR.T q ON p.ID = q.ID
"""


def fill(directory: str, rows: int) -> None:
    import duckdb

    con = duckdb.connect(f"{directory}/PRDIFF.db")
    con.execute(FILL.format(n=rows))
    con.close()


NAMES = ["prod_rows", "pr_rows", "only_prod", "only_pr", "matched", "changed",
         "qty", "label", "price", "day"]


def check(path: str) -> None:
    out = json.load(open(path))
    floor = dict(zip(NAMES, (int(v) for v in out["floor"])))
    r = out["diff"]
    got = {"prod_rows": r["rows"]["prod"], "pr_rows": r["rows"]["pr"],
           "only_prod": r["exclusive"]["prod"], "only_pr": r["exclusive"]["pr"],
           "matched": r["matched"], "changed": r["changed"],
           **{c["name"].lower(): c["changed"] for c in r["columns"]}}
    if got != floor:
        sys.exit(f"prdiff and the hand-written statement disagree:\n{got}\n{floor}")


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "sql":
        print(BASELINE)
    elif sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
