"""The one adapter through which everything reads and writes the DuckDB warehouse.

Rules it enforces (RELIABILITY #1-#4, #16, #21):
- no connection at import time; every connection is a context manager closed in ``finally``;
- a writer that meets another process's file lock waits with jittered backoff instead of failing
  (the Dagster pool is the first line of defence, this is the safety net);
- every replace is one transaction, so a killed writer leaves the previous table intact;
- the session time zone is UTC and timestamps are stored with microsecond precision.
"""

import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import duckdb
import pandas as pd

SCHEMAS = ("raw", "features", "training", "evaluation", "monitoring", "governance")
_LOCK_ERROR = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_STORAGE_VERSION_ERROR = re.compile(r"version number|storage version|serializ", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class WarehouseLockTimeout(RuntimeError):
    """Another process held the warehouse write lock for longer than the configured wait."""


class WarehouseVersionError(RuntimeError):
    """The warehouse file was written by an incompatible DuckDB storage version."""


def quote_table(name: str) -> str:
    """Validate a ``schema.table`` name and return it quoted; refuses anything that is not an identifier."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid table name: {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


@contextmanager
def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 120.0,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting (with jitter) while another process holds its lock."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {}
    if threads:
        config["threads"] = threads
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.IOException as exc:
            if _STORAGE_VERSION_ERROR.search(str(exc)):
                raise WarehouseVersionError(_version_message(path, exc)) from exc
            if not _LOCK_ERROR.search(str(exc)):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockTimeout(
                    f"warehouse {path} stayed locked by another process for {lock_timeout_s:.0f}s: {exc}"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
        except duckdb.SerializationException as exc:
            raise WarehouseVersionError(_version_message(path, exc)) from exc
    try:
        # Set after connecting: the ICU extension that owns TimeZone loads with the database, not before it.
        conn.execute("SET TimeZone = 'UTC'")
        if not read_only:
            for schema in SCHEMAS:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        yield conn
    finally:
        conn.close()


def _version_message(path: Path, exc: Exception) -> str:
    return (
        f"{path} was written by a DuckDB storage version this build ({duckdb.__version__}) cannot read; "
        f"re-create it or pin the matching duckdb version ({exc})"
    )


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def table_schema(conn: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    """Column name -> DuckDB type, in table order."""
    rows = conn.execute(f"DESCRIBE {quote_table(name)}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def row_count(conn: duckdb.DuckDBPyConnection, name: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {quote_table(name)}").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def replace_table(conn: duckdb.DuckDBPyConnection, name: str, select_sql: str) -> int:
    """Atomically replace ``name`` with the result of ``select_sql``; returns the new row count."""
    with transaction(conn):
        conn.execute(f"CREATE OR REPLACE TABLE {quote_table(name)} AS {select_sql}")
        return row_count(conn, name)


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    frame: pd.DataFrame,
    *,
    where: str,
    params: list[object] | None = None,
    create_sql: str | None = None,
    own_transaction: bool = True,
) -> None:
    """In one transaction: create the table if needed (from ``create_sql``, else from ``frame``'s columns),
    delete the rows matching ``where``, append ``frame``. ``own_transaction=False``: inside the caller's
    ``transaction``, to replace several tables all or nothing.

    Re-running the same slice (a partition, a file, a model version) therefore replaces it, never duplicates it.
    """
    quoted = quote_table(name)
    conn.register("_incoming", frame)
    try:
        with transaction(conn) if own_transaction else nullcontext(conn):
            if create_sql is not None:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {quoted} ({create_sql})")
            elif not table_exists(conn, name):
                conn.execute(f"CREATE TABLE {quoted} AS SELECT * FROM _incoming WHERE false")
            conn.execute(f"DELETE FROM {quoted} WHERE {where}", params or [])
            if len(frame):
                columns = ", ".join(f'"{c}"' for c in frame.columns)
                conn.execute(f"INSERT INTO {quoted} ({columns}) SELECT {columns} FROM _incoming")
    except BaseException:
        with suppress(duckdb.Error):  # fails inside the caller's aborted transaction: the first error is the news
            conn.unregister("_incoming")
        raise
    conn.unregister("_incoming")


def to_utc_micros(series: pd.Series) -> pd.Series:
    """UTC, microsecond precision: nanosecond timestamps break DuckDB ASOF joins (RELIABILITY #21)."""
    out = pd.to_datetime(series, utc=True)
    return out.astype("datetime64[us, UTC]")
