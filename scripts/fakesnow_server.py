"""fakesnow's Snowflake stand-in server, as prdiff's tests and benchmark run it.

fakesnow (https://github.com/tekumara/fakesnow) serves Snowflake's connector REST protocol
over DuckDB. Two things are added here, before its server starts:

- `--db-path DIR`: the server keeps its databases in DIR (DATABASE.db DuckDB files, which
  the benchmark fills directly). `fakesnow -s` ignores `-d`.
- INFORMATION_SCHEMA.COLUMNS gets DATETIME_PRECISION, a column Snowflake's view has and
  fakesnow 0.12's lacks, and reports timestamps of DuckDB's second/millisecond/nanosecond
  types as TIMESTAMP_NTZ (as Snowflake names them) instead of DuckDB's TIMESTAMP_S/_MS/_NS.
  prdiff's Snowflake dialect reads DATETIME_PRECISION to compare timestamps across a
  precision change. Snowflake documents the column as "not applicable"; prdiff's catalog
  query tolerates NULL there (see docs/warehouses/snowflake.md).
- A statement's result `rowtype` names DuckDB's second/millisecond timestamps and 4-byte
  floats (fakesnow 0.12 fails on them: "NotImplementedError") and gives every timestamp
  column the scale its DuckDB type has (0, 3, 6 or 9), as Snowflake gives a
  TIMESTAMP_NTZ(p) column scale p; fakesnow 0.12 says 9 for all. prdiff's Snowflake
  driver reads a relation's columns from the rowtype of `SELECT * … LIMIT 0`.

Usage: fakesnow_server.py --host 127.0.0.1 --port PORT [--db-path DIR]
"""

import argparse
import sys

from fakesnow import info_schema

_view = info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW
_patches = [
    (
        "     else columns.data_type end as DATA_TYPE,",
        "     when columns.data_type in ('TIMESTAMP_S', 'TIMESTAMP_MS', 'TIMESTAMP_NS') then 'TIMESTAMP_NTZ'\n"
        "     else columns.data_type end as DATA_TYPE,",
    ),
    (
        "case when columns.data_type='DOUBLE' then NULL else columns.numeric_scale end as NUMERIC_SCALE,",
        "case when columns.data_type='DOUBLE' then NULL else columns.numeric_scale end as NUMERIC_SCALE,\n"
        "case columns.data_type when 'TIMESTAMP_S' then 0 when 'TIMESTAMP_MS' then 3\n"
        "     when 'TIMESTAMP' then 6 when 'TIMESTAMP WITH TIME ZONE' then 6\n"
        "     when 'TIMESTAMP_NS' then 9 end as DATETIME_PRECISION,",
    ),
]
for old, new in _patches:
    if old not in _view:
        sys.exit(f"fakesnow_server.py: this fakesnow's COLUMNS view differs (no {old!r}); update the patch")
    _view = _view.replace(old, new)
info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW = _view

# Imported after the patch: the server module creates its shared instance on import.
import fakesnow.server  # noqa: E402
from fakesnow import rowtype  # noqa: E402

_TIMESTAMP_SCALES = {"TIMESTAMP_S": 0, "TIMESTAMP_MS": 3, "TIMESTAMP": 6, "TIMESTAMP WITH TIME ZONE": 6, "TIMESTAMP_NS": 9}
rowtype.duckdb_to_sf_type.update({"TIMESTAMP_S": "timestamp_ntz", "TIMESTAMP_MS": "timestamp_ntz", "FLOAT": "real"})
_describe_as_rowtype = rowtype.describe_as_rowtype


def _describe_with_scales(describe_results: list) -> list:
    infos = _describe_as_rowtype(describe_results)
    for info, (_name, duck_type, *_rest) in zip(infos, describe_results, strict=True):
        if duck_type in _TIMESTAMP_SCALES:
            info["scale"] = _TIMESTAMP_SCALES[duck_type]
    return infos


if getattr(fakesnow.server, "describe_as_rowtype", None) is not _describe_as_rowtype:
    sys.exit("fakesnow_server.py: this fakesnow's server no longer imports describe_as_rowtype; update the patch")
fakesnow.server.describe_as_rowtype = _describe_with_scales
import uvicorn  # noqa: E402
from fakesnow.instance import FakeSnow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path")
    args = parser.parse_args()
    if args.db_path:
        fakesnow.server.shared_fs = FakeSnow(db_path=args.db_path)
    uvicorn.run(fakesnow.server.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
