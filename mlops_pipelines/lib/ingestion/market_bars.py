"""The raw bar tables, owned here: their names, columns and every read and write of them.

- ``raw.market_bars``: the validated bars, one row per (symbol, bar open time, UTC), of the source's declared
  interval (``MLOPS_BAR_INTERVAL``; ``lib/core/bars.py``).
- ``raw.quarantined_bars``: every rejected row as it arrived (text), with its file, line, reason and the daily
  partition it belongs to (or a key of its own for rows that belong to none).

The other raw tables have their own owners: ``raw.market_bar_revisions`` (``revisions.py``) and
``raw.quarantined_files`` (``raw_folder.py``). A run writes all of them in one transaction (``ingest.py``).
"""

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse

BARS_TABLE = "raw.market_bars"
QUARANTINE_TABLE = "raw.quarantined_bars"
BAR_COLUMNS = {
    "symbol": "VARCHAR NOT NULL",
    "sector": "VARCHAR",
    "timestamp": "TIMESTAMP WITH TIME ZONE NOT NULL",
    "open": "DOUBLE",
    "high": "DOUBLE",
    "low": "DOUBLE",
    "close": "DOUBLE",
    "volume": "DOUBLE",
    "available_at": "TIMESTAMP WITH TIME ZONE NOT NULL",  # when the bar reached us (UTC)
    "source_file": "VARCHAR",
}
QUARANTINE_COLUMNS = {  # the row's values as they arrived: text
    "partition_key": "VARCHAR",
    "source_file": "VARCHAR",
    "source_row": "BIGINT",  # CSV: the line in the file (header = 1); Parquet: the 0-based row index
    "reason": "VARCHAR",
    "symbol": "VARCHAR",
    "timestamp": "VARCHAR",
    "open": "VARCHAR",
    "high": "VARCHAR",
    "low": "VARCHAR",
    "close": "VARCHAR",
    "volume": "VARCHAR",
    "quarantined_at": "TIMESTAMP WITH TIME ZONE",
}
# Partition keys of quarantined rows that belong to no day: re-written by every run that reads their file.
UNPARSEABLE_PARTITION = "__unparseable__"
OUTSIDE_PARTITIONS = "__outside_partitions__"  # before the first partition, or in the future
NO_PARTITION = (UNPARSEABLE_PARTITION, OUTSIDE_PARTITIONS)
_IN_WINDOW = '"timestamp" >= ? AND "timestamp" < ?'
_PANDAS_TYPES = {"VARCHAR": object, "DOUBLE": float, "TIMESTAMP WITH TIME ZONE": "datetime64[us, UTC]"}


def empty_bars() -> pd.DataFrame:
    """No bars, in the table's columns and dtypes."""
    return pd.DataFrame(
        {
            name: pd.Series(dtype=_PANDAS_TYPES[sql_type.removesuffix(" NOT NULL")])  # type: ignore[arg-type]
            for name, sql_type in BAR_COLUMNS.items()
        }
    )


def create_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {BARS_TABLE} ({warehouse.columns_sql(BAR_COLUMNS)})")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} ({warehouse.columns_sql(QUARANTINE_COLUMNS)})")


def relation(start: datetime | None = None, end: datetime | None = None) -> str:
    """The bars as a SQL relation, for the queries that join or aggregate them inside DuckDB (labels,
    decisions); optionally only bars with ``start <= timestamp < end``."""
    bounds = [f"\"timestamp\" >= TIMESTAMPTZ '{start.isoformat()}'"] if start else []
    bounds += [f"\"timestamp\" < TIMESTAMPTZ '{end.isoformat()}'"] if end else []
    return f"(SELECT * FROM {BARS_TABLE}{' WHERE ' + ' AND '.join(bounds) if bounds else ''})"


def bars_in_window(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """The stored bars with ``start <= timestamp < end``, every column."""
    return conn.execute(f"SELECT * FROM {BARS_TABLE} WHERE {_IN_WINDOW}", [start, end]).fetchdf()


def closes(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """``symbol, timestamp, close`` of the bars with ``start <= timestamp < end``, by time then symbol."""
    return conn.execute(
        f'SELECT symbol, "timestamp", close FROM {BARS_TABLE} WHERE {_IN_WINDOW} ORDER BY "timestamp", symbol',
        [start, end],
    ).fetchdf()


def last_bar_time(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """The open time of the newest stored bar (None when there is none)."""
    if not warehouse.table_exists(conn, BARS_TABLE):
        return None
    return warehouse.scalar(conn, f'SELECT max("timestamp") FROM {BARS_TABLE}')


def replace_window(conn: duckdb.DuckDBPyConnection, bars: pd.DataFrame, start: datetime, end: datetime) -> None:
    """The bars of ``[start, end)`` become ``bars``, inside the caller's transaction."""
    warehouse.replace_rows(conn, BARS_TABLE, bars, where=_IN_WINDOW, params=[start, end], own_transaction=False)


def replace_all(conn: duckdb.DuckDBPyConnection, bars: pd.DataFrame) -> None:
    """The table holds exactly ``bars`` (fixtures and benchmarks), in one transaction."""
    create_sql = warehouse.columns_sql(BAR_COLUMNS)
    warehouse.replace_rows(conn, BARS_TABLE, bars[list(BAR_COLUMNS)], where="true", create_sql=create_sql)


def replace_quarantined(
    conn: duckdb.DuckDBPyConnection, rows: pd.DataFrame, *, partition_keys: list[str], files_read: list[str]
) -> None:
    """Replace the quarantined rows of the days ``partition_keys`` and the partition-less rows of ``files_read``
    with ``rows``, inside the caller's transaction."""
    warehouse.replace_rows(
        conn,
        QUARANTINE_TABLE,
        rows[list(QUARANTINE_COLUMNS)],
        where="partition_key IN (SELECT unnest(?)) "
        "OR (partition_key IN (SELECT unnest(?)) AND source_file IN (SELECT unnest(?)))",
        params=[partition_keys, list(NO_PARTITION), files_read],
        own_transaction=False,
    )


def duplicate_bars(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(stored bars beyond the first of each (symbol, timestamp), all stored bars): re-runs must never duplicate."""
    rows = conn.execute(f'SELECT count(*) - count(DISTINCT (symbol, "timestamp")), count(*) FROM {BARS_TABLE}')
    duplicates, total = rows.fetchall()[0]
    return int(duplicates), int(total)


def reason_counts(reasons: Iterable[str]) -> Counter[str]:
    """Rows per reason, for reports: a row with two reasons counts for each; a reason's detail in square brackets
    (which row was kept...) is left out."""
    return Counter(re.sub(r" \[.*\]$", "", r) for text in reasons for r in text.split("; "))


def quarantine_reasons(conn: duckdb.DuckDBPyConnection, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent quarantine reasons (counted as ``reason_counts`` does) and their row counts, most
    frequent first, ties by name; empty when nothing was ever quarantined."""
    if not warehouse.table_exists(conn, QUARANTINE_TABLE):
        return []
    counts: Counter[str] = Counter()
    for reason, rows in conn.execute(f"SELECT reason, count(*) FROM {QUARANTINE_TABLE} GROUP BY 1").fetchall():
        for name, n in reason_counts([str(reason)]).items():
            counts[name] += n * int(rows)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
