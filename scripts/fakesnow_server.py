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
