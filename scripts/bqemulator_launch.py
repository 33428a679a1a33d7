"""Starts bqemulator (BigQuery's REST API over DuckDB) for the tests, offline.

bqemulator loads DuckDB's `spatial` extension at start, which downloads it from the
internet; the tests use no GEOGRAPHY functions, so this launcher replaces that step with a
no-op and then runs bqemulator's own command line (`bqemulator start …`), passing the
arguments through:

    python scripts/bqemulator_launch.py start --rest-port P --grpc-port Q --project ID
"""

import sys

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self) -> None:  # noqa: ARG001 - same signature as the method it replaces
    """GEOGRAPHY (ST_*) is unavailable on this emulator: no network to fetch `spatial`."""


DuckDBEngine._load_spatial = _no_spatial

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    sys.exit(main())
