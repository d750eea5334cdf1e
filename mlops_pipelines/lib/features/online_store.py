"""The embedded online store: the latest feature vector per entity, in one SQLite file in WAL mode.

Why SQLite and not the DuckDB warehouse: DuckDB allows one writing process and locks readers out of a file
being written. SQLite in WAL mode lets any number of reader processes read a consistent
snapshot while one writer replaces the table: a refresh is one transaction, so a reader sees either the old
vectors or the new ones, never a mix (no torn reads), and never a lock error. Each refresh then truncates the
WAL (``checkpoint``): with readers always busy SQLite would never reset it on its own.

Layout: one wide row per entity key (``entity_key`` primary key, WITHOUT ROWID, so a lookup is one B-tree
probe), one column per feature, plus per-view event and created times.

Production uses Redis instead (``online_store_redis.py``) behind the same contract, ``OnlineStore``: every
lookup reads one snapshot, a refresh replaces the whole snapshot in one step, many keys are read at once, and
staleness is visible (``snapshot_id``, ``written_at``, and each vector's ``<view>__event_ts``).
``OnlineStoreLocation`` names which backend and where; it is what settings build and everything else uses.
"""

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

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


class OnlineStore(Protocol):
    """What serving reads: the latest feature vector per entity, from one snapshot per lookup."""

    def snapshot_id(self) -> str | None:
        """The run that wrote the snapshot being served (None before the first refresh)."""
        ...

    def written_at(self) -> datetime | None:
        """When that snapshot was written (UTC): how stale the store is as a whole."""
        ...

    def lookup_one(self, entity_key: str) -> dict[str, Any] | None: ...

    def lookup(self, entity_keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Feature vectors keyed by entity (each key once, in the order asked); an unknown entity maps to None."""
        ...

    def close(self) -> None: ...


def snapshot_records(frame: pd.DataFrame, key: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The snapshot as plain Python rows ``(key, *values)`` and the value columns, as every backend stores them:
    missing values None, UTC times as ISO-8601 text, booleans 0/1. Refuses a key that appears twice."""
    if frame[key].duplicated().any():
        dupes = frame.loc[frame[key].duplicated(), key].head(3).tolist()
        raise ValueError(f"online store snapshot has duplicate {key!r} values, e.g. {dupes}")
    columns = [str(c) for c in frame.columns if c != key]
    out = frame[[key, *columns]].copy()
    for column in columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif out[column].dtype.kind == "b":
            out[column] = out[column].astype("int64")
    records = list(out.astype(object).where(out.notna(), None).itertuples(index=False, name=None))
    return columns, records


def utc_now_text() -> str:
    """The write time every backend records with a snapshot."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_written_at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def write_snapshot(path: str | Path, frame: pd.DataFrame, *, key: str, snapshot_id: str) -> int:
    """Replace the store's content with ``frame`` (one row per ``key``) in a single transaction."""
    path = Path(path)
    columns, records = snapshot_records(frame, key)
    defs = ", ".join(f"{quote_ident(c)} {_SQL_TYPES.get(frame[c].dtype.kind, 'TEXT')}" for c in columns)
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
            conn.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('written_at', ?)", [utc_now_text()])
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
        return self._meta("snapshot_id")

    def written_at(self) -> datetime | None:
        return parse_written_at(self._meta("written_at"))

    def _meta(self, name: str) -> str | None:
        row = self._conn().execute(f"SELECT v FROM {META_TABLE} WHERE k = ?", (name,)).fetchone()
        return row[0] if row else None

    def entity_keys(self, limit: int = 10) -> list[str]:
        """The first ``limit`` entity keys of the snapshot, in order (what a demo or a smoke check may ask for)."""
        rows = self._conn().execute(f"SELECT entity_key FROM {TABLE} ORDER BY entity_key LIMIT ?", (limit,))
        return [row[0] for row in rows]

    def newest_event_time(self, views: Sequence[str]) -> str | None:
        """The newest event time of any of ``views`` in the snapshot (ISO text), None when it holds none: the
        clock for replaying stored data (serving's MLOPS_SERVE_AS_OF=latest)."""
        columns = ", ".join(f"max({quote_ident(f'{view}__event_ts')})" for view in views)
        row = self._conn().execute(f"SELECT {columns} FROM {TABLE}").fetchone() if views else None
        return max((v for v in row or () if v), default=None)

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


Backend = Literal["sqlite", "redis"]


@dataclass(frozen=True)
class OnlineStoreLocation:
    """Which online store, and where: ``sqlite`` (the file at ``path``, the embedded default) or ``redis`` (the
    server at ``redis_url``; ``redis_password`` when the URL holds none). Settings build it
    (MLOPS_ONLINE_STORE...); assets write through it, the CLI and serving read through it."""

    backend: Backend
    path: Path
    redis_url: str = ""
    redis_password: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "redis"):
            raise ValueError(f"online store backend must be 'sqlite' or 'redis', got {self.backend!r}")
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("the redis online store needs a URL (MLOPS_REDIS_URL), e.g. redis://127.0.0.1:6379/0")

    def describe(self) -> str:
        """Where the store is, for operators (never the password)."""
        if self.backend == "sqlite":
            return str(self.path)
        from mlops_pipelines.lib.features.online_store_redis import redacted

        return redacted(self.redis_url)

    def write(self, frame: pd.DataFrame, *, key: str, snapshot_id: str) -> int:
        """Replace the served snapshot with ``frame`` in one step; the number of entities written."""
        if self.backend == "sqlite":
            return write_snapshot(self.path, frame, key=key, snapshot_id=snapshot_id)
        from mlops_pipelines.lib.features import online_store_redis

        return online_store_redis.write_snapshot(
            self.redis_url, frame, key=key, snapshot_id=snapshot_id, password=self.redis_password
        )

    def reader(self) -> OnlineStore:
        """A long-lived reader; raises OnlineStoreMissing when no snapshot was ever written."""
        if self.backend == "sqlite":
            return OnlineStoreReader(self.path)
        from mlops_pipelines.lib.features.online_store_redis import RedisOnlineStoreReader

        return RedisOnlineStoreReader(self.redis_url, password=self.redis_password)
