"""Starts bqemulator (BigQuery's REST API over DuckDB) for the tests, offline.

bqemulator loads DuckDB's `spatial` extension at start, which downloads it from the
internet; the tests use no GEOGRAPHY functions, so this launcher replaces that step with a
no-op. bqemulator also runs every request on one shared DuckDB connection, and its
handlers yield to the event loop between statements: the launcher serves one HTTP request
at a time, so no request runs a statement while another holds a result on that connection.
It then runs bqemulator's own command line (`bqemulator start …`), passing the arguments
through:

    python scripts/bqemulator_launch.py start --rest-port P --grpc-port Q --project ID
"""

import asyncio
import sys

import bqemulator.server as server
from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self) -> None:  # noqa: ARG001 - same signature as the method it replaces
    """GEOGRAPHY (ST_*) is unavailable on this emulator: no network to fetch `spatial`."""


DuckDBEngine._load_spatial = _no_spatial

_create_app = server.create_app


def _one_request_at_a_time(context):
    """bqemulator's app behind a lock: HTTP requests run one after another."""
    app = _create_app(context)
    lock = asyncio.Lock()

    async def serialized(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        async with lock:
            await app(scope, receive, send)

    return serialized


server.create_app = _one_request_at_a_time

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    sys.exit(main())
