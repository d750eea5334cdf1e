"""The embedded online store: the latest feature vector per entity, in one SQLite file in WAL mode.

Why SQLite and not the DuckDB warehouse: DuckDB allows one writing process and locks readers out of a file
being written. SQLite in WAL mode lets any number of reader processes read a consistent
snapshot while one writer replaces the table: a refresh is one transaction, so a reader sees either the old
vectors or the new ones, never a mix (no torn reads), and never a lock error. Each refresh then truncates the
WAL (``checkpoint``): with readers always busy SQLite would never reset it on its own.

Layout: one wide row per entity key (``entity_key`` primary key, WITHOUT ROWID, so a lookup is one B-tree
probe), one column per feature, plus per-view event and created times. Production swaps this for Redis
behind the same two calls (``write_snapshot``, ``lookup``).
"""

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.warehouse import quote_ident

TABLE = "online_features"
META_TABLE = "online_store_meta"
_SQL_TYPES = {"f": "REAL", "i": "INTEGER", "u": "INTEGER", "b": "INTEGER"}


class OnlineStoreMissing(MlopsError, FileNotFoundError):
    """The online store file does not exist yet (``features/online_store`` has never been materialized)."""


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def write_snapshot(path: str | Path, frame: pd.DataFrame, *, key: str, snapshot_id: str) -> int:
    """Replace the store's content with ``frame`` (one row per ``key``) in a single transaction."""
    path = Path(path)
    if frame[key].duplicated().any():
        dupes = frame.loc[frame[key].duplicated(), key].head(3).tolist()
        raise ValueError(f"online store snapshot has duplicate {key!r} values, e.g. {dupes}")
    columns = [c for c in frame.columns if c != key]
    defs = ", ".join(f"{quote_ident(str(c))} {_SQL_TYPES.get(frame[c].dtype.kind, 'TEXT')}" for c in columns)
    out = frame.copy()
    for column in columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records = list(
        out[[key, *columns]].astype(object).where(out[[key, *columns]].notna(), None).itertuples(index=False, name=None)
    )
    placeholders = ", ".join("?" * (len(columns) + 1))
    conn = _connect(path, readonly=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE TABLE {TABLE} (entity_key TEXT PRIMARY KEY, {defs}) WITHOUT ROWID")
            conn.executemany(f"INSERT INTO {TABLE} VALUES ({placeholders})", records)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (k TEXT PRIMARY KEY, v TEXT)")
            conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('snapshot_id', ?)", [snapshot_id])
            conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('entity_key', ?)", [key])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        checkpoint(conn)
    finally:
        conn.close()
    return len(records)


_CHECKPOINT_WAIT_MS = 5_000


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database file and truncate the WAL to zero bytes; True when it did.

    SQLite checkpoints on its own only when no reader still uses the WAL's frames; with readers always busy, as
    serving is, the WAL grows by a whole snapshot per refresh without end. This waits (up to 5 s; readers are
    never blocked meanwhile) until the readers of older snapshots are done. If one holds on longer, the WAL is
    left for the next refresh to truncate.
    """
    conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_WAIT_MS}")
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


def _vector(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    # Column names come from the statement itself, so a refresh that changes the columns cannot misalign them.
    return {d[0]: value for d, value in zip(cursor.description[1:], row[1:], strict=True)}


_MAX_KEYS = 500  # SQLite caps host parameters per statement; 500 keeps well under every build's limit


class OnlineStoreReader:
    """A long-lived read-only handle for serving: lookups for one or many entities.

    Thread-safe (one connection per thread). Every lookup reads one snapshot: a single SELECT, or for more keys
    than one statement takes, several SELECTs inside one read transaction (WAL gives it a fixed view).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise OnlineStoreMissing(f"online store {self.path} does not exist; materialize features/online_store")
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
        return conn

    def snapshot_id(self) -> str | None:
        row = self._conn().execute(f"SELECT v FROM {META_TABLE} WHERE k = 'snapshot_id'").fetchone()
        return row[0] if row else None

    def entity_keys(self, limit: int = 10) -> list[str]:
        """The first ``limit`` entity keys of the snapshot, in order (what a demo or a smoke check may ask for)."""
        rows = self._conn().execute(f"SELECT entity_key FROM {TABLE} ORDER BY entity_key LIMIT ?", (limit,))
        return [row[0] for row in rows]

    def lookup_one(self, entity_key: str) -> dict[str, Any] | None:
        cursor = self._conn().execute(f"SELECT * FROM {TABLE} WHERE entity_key = ?", (entity_key,))
        row = cursor.fetchone()
        return None if row is None else _vector(cursor, row)

    def lookup(self, entity_keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Feature vectors keyed by entity; an unknown entity maps to None."""
        conn = self._conn()
        keys = list(dict.fromkeys(entity_keys))
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(keys)
        chunks = [keys[start : start + _MAX_KEYS] for start in range(0, len(keys), _MAX_KEYS)]
        if len(chunks) > 1:
            conn.execute("BEGIN")  # one read snapshot for every chunk: a writer may commit in between
        try:
            for chunk in chunks:
                sql = f"SELECT * FROM {TABLE} WHERE entity_key IN ({', '.join('?' * len(chunk))})"
                cursor = conn.execute(sql, chunk)
                for row in cursor:
                    found[row[0]] = _vector(cursor, row)
        finally:
            if len(chunks) > 1:
                conn.execute("COMMIT")
        return found

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
