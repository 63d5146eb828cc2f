"""One in-memory DuckDB per process for queries over Parquet files (validation, id checks).

Opening a DuckDB connection costs 60-90 ms (a new database instance, its buffer pool and
threads); a cursor on an open one costs a few. Stages that ask one question of their Parquet
files each take a cursor here instead of connecting, so small inputs do not pay that fixed cost
per question. A cursor is a connection of its own: use one per thread, and close it when done.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import duckdb

# The queries are streaming scans: without a limit DuckDB keeps decompressed pages cached as it
# reads (hundreds of MB on a gigabyte of text), which the pipeline's memory budget cannot spare.
CONFIG: dict[str, Any] = {"memory_limit": "256MB"}
_lock = threading.Lock()
_database: tuple[int, duckdb.DuckDBPyConnection] | None = None


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection to this process's in-memory database (a fresh one after a fork)."""
    global _database
    with _lock:
        if _database is None or _database[0] != os.getpid():
            _database = (os.getpid(), duckdb.connect(config=CONFIG))
        return _database[1].cursor()
