"""The one adapter through which everything reads and writes the DuckDB warehouse.

Rules it enforces (the storage guarantees of docs/reliability.md rest on them):
- no connection at import time; every connection is a context manager closed in ``finally``;
- a writer that meets another process's file lock waits with jittered backoff instead of failing
  (the Dagster pool is the first line of defence, this is the safety net);
- every replace is one transaction, so a killed writer leaves the previous table intact;
- the session time zone is UTC and timestamps are stored with microsecond precision;
- a file cut short is refused when it is opened (``WarehouseCorrupt``), not in the middle of a query;
- an identifier reaches SQL text only through ``quote_ident`` (tables through ``quote_table``).
"""

import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from mlops_pipelines.lib.core.errors import MlopsError

SCHEMAS = ("raw", "features", "training", "evaluation", "monitoring", "governance", "inference")
_LOCK_ERROR = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_STORAGE_VERSION_ERROR = re.compile(r"version number|storage version|serializ", re.IGNORECASE)
_CORRUPT_ERROR = re.compile(r"could not read enough bytes|not a valid duckdb database|corrupt|checksum", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


# A DuckDB file is three 4 KiB headers followed by fixed-size blocks (DuckDB's Storage::BLOCK_START).
_FILE_HEADERS_BYTES = 3 * 4096


class WarehouseLockTimeout(MlopsError, RuntimeError):
    """Another process held the warehouse write lock for longer than the configured wait."""


class WarehouseVersionError(MlopsError, RuntimeError):
    """The warehouse file was written by an incompatible DuckDB storage version."""


class WarehouseMissing(MlopsError, FileNotFoundError):
    """A read-only open of a warehouse file that does not exist (nothing has been materialized there yet)."""


class WarehouseCorrupt(MlopsError, RuntimeError):
    """The warehouse file is damaged (truncated by a full disk or a bad copy): restore it from a backup or rebuild
    it by re-materializing the assets."""


def quote_ident(name: str) -> str:
    """``name`` as one SQL identifier (DuckDB and SQLite alike): in double quotes, inner double quotes doubled.

    The one way any identifier reaches SQL text. Names a user typed (entity file columns) never do: the
    retrieval code refers to those by position (lib/features/point_in_time.py).
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """Validate a ``schema.table`` name and return it quoted; refuses anything that is not an identifier."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid table name: {name!r}")
    return ".".join(quote_ident(part) for part in name.split("."))


@contextmanager
def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 120.0,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting (with jitter) while another process holds its lock.

    A damaged file (truncated by a full disk or an interrupted copy) raises ``WarehouseCorrupt`` naming it here,
    at open, rather than a read failing half-way through a query (``check_file_complete``).
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise WarehouseMissing(f"warehouse {path} does not exist: materialize the assets first (e.g. `make demo`)")
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
            if _CORRUPT_ERROR.search(str(exc)):
                raise WarehouseCorrupt(f"warehouse {path} is damaged and cannot be opened: {exc}") from exc
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
        check_file_complete(conn, path)
        # Set after connecting: the ICU extension that owns TimeZone loads with the database, not before it.
        conn.execute("SET TimeZone = 'UTC'")
        if not read_only:
            for schema in SCHEMAS:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        yield conn
    finally:
        conn.close()


def check_file_complete(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise ``WarehouseCorrupt`` when the file is shorter than the blocks it uses.

    DuckDB opens a truncated file and fails only when a query reaches a missing block. Its header says how many
    blocks there are (``PRAGMA database_size``); a file holding the headers and all of them is complete (the
    common case: one metadata read). A shorter one is fine only if what is missing is free blocks: DuckDB trims
    free blocks from the end of the file but keeps counting them. It is damaged if it cannot hold the blocks
    in use, or (looking at where every table's data and the catalog actually are) the highest of them.
    """
    rows = conn.execute(
        "SELECT block_size, total_blocks, used_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchall()
    if not rows or not path.exists():
        return
    block_size, total_blocks, used_blocks = (int(v) for v in rows[0])
    actual = path.stat().st_size
    if actual >= _FILE_HEADERS_BYTES + block_size * total_blocks:
        return
    try:
        needed = used_blocks if actual < _FILE_HEADERS_BYTES + block_size * used_blocks else _highest_block(conn) + 1
    except duckdb.IOException as exc:  # the table metadata itself lies past the end
        raise WarehouseCorrupt(f"warehouse {path} is damaged: {exc}") from exc
    if actual < _FILE_HEADERS_BYTES + block_size * needed:
        raise WarehouseCorrupt(
            f"warehouse {path} is truncated: {actual:,} bytes, but its blocks in use need "
            f"{_FILE_HEADERS_BYTES + block_size * needed:,}; restore it from a backup or rebuild it by "
            "re-materializing the assets"
        )


def _highest_block(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest block id holding the catalog or any table's data (-1 for none)."""
    highest = scalar(conn, "SELECT max(block_id) FROM pragma_metadata_info()")
    tables = conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    for schema, table in tables:
        top = scalar(
            conn,
            "SELECT max(greatest(block_id, list_max(additional_block_ids))) FROM pragma_storage_info(?)",
            [f"{quote_ident(schema)}.{quote_ident(table)}"],
        )
        highest = max(v for v in (highest, top, -1) if v is not None)
    return -1 if highest is None else int(highest)


def _version_message(path: Path, exc: Exception) -> str:
    return (
        f"{path} was written by a DuckDB storage version this build ({duckdb.__version__}) cannot read; "
        f"re-create it or pin the matching duckdb version ({exc})"
    )


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> Any:
    """The first value of the first row (None for no rows).

    Reads the whole result: DuckDB 2 refuses the connection's next ``register`` or ``sql`` while a result is
    only partly fetched (``fetchone``), with ``ResourceInUseException``.
    """
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def columns_sql(columns: Mapping[str, str]) -> str:
    """A column list for ``CREATE TABLE name (...)`` from column name -> type (constraints included)."""
    return ", ".join(f"{quote_ident(name)} {sql_type}" for name, sql_type in columns.items())


def fetch_dicts(conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> list[dict[str, Any]]:
    """Every row of a query as a dict (column -> value)."""
    cursor = conn.execute(sql, params or [])
    columns = [d[0] for d in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    schema, table = name.split(".")
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?"
    return bool(scalar(conn, sql, [schema, table]))


def table_schema(conn: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    """Column name -> DuckDB type, in table order."""
    rows = conn.execute(f"DESCRIBE {quote_table(name)}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def row_count(conn: duckdb.DuckDBPyConnection, name: str) -> int:
    return int(scalar(conn, f"SELECT count(*) FROM {quote_table(name)}") or 0)


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
                columns = ", ".join(quote_ident(str(c)) for c in frame.columns)
                conn.execute(f"INSERT INTO {quoted} ({columns}) SELECT {columns} FROM _incoming")
    except BaseException:
        with suppress(duckdb.Error):  # fails inside the caller's aborted transaction: the first error is the news
            conn.unregister("_incoming")
        raise
    conn.unregister("_incoming")


def to_utc_micros(series: pd.Series) -> pd.Series:
    """UTC, microsecond precision: nanosecond timestamps break DuckDB ASOF joins.

    Sub-microsecond parts are cut off (floored), never rounded: a time 1 ns before a row became visible must
    stay before it, or a point-in-time join would serve the row early. Text is read as ISO 8601 (each value
    on its own, so offsets and precisions may differ); naive times are UTC.
    """
    text = series.dtype == object or pd.api.types.is_string_dtype(series.dtype)
    out = pd.to_datetime(series, utc=True, format="ISO8601" if text else None)
    return out.dt.floor("us").astype("datetime64[us, UTC]")
