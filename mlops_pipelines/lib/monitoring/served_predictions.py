"""The serving API's prediction log: every answered prediction, first in local files, then in the warehouse.

The serving process never waits on the warehouse (DuckDB admits one writing process, which a pipeline run may
hold for minutes). It appends one JSON line per prediction to a segment file of its own
(``<dir>/<started>-<pid>.jsonl``, opened ``O_APPEND``) with one ``write`` per request, before the response is
sent: a killed process (kill -9) loses nothing it answered, since the bytes are in the kernel already. The
segments are fsync'd every ``fsync_interval_s`` and when closed, so a machine crash loses at most that last
interval. A process never reopens an older segment: a restart starts a new one, and a line cut short by a kill
(no trailing newline) is never a complete entry, so it is skipped, never half-read.

Roles: ``serve`` (answered by the version the request asked for: the champion for ``production``), ``canary``
(answered by the challenger, for a symbol in the production deployment's canary share), ``shadow`` (the
challenger's score of the same item, computed off the response path and never sent; request id
``<request id>:shadow``, same item), ``batch`` (hourly batch inference). ``shadow_pairs`` joins each shadow row
to the champion's answer of the same item.

``ingest`` copies every complete line into ``monitoring.served_predictions``, keyed by (request id, item):
running it again, or over a segment it has partly read, inserts nothing twice. Segments wholly ingested and no
longer written are then deleted.
"""

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse

SERVED_TABLE = "monitoring.served_predictions"
SERVED_DDL = """
    request_id VARCHAR NOT NULL, item INTEGER NOT NULL, model VARCHAR, version VARCHAR, alias VARCHAR, role VARCHAR,
    symbol VARCHAR, features_as_of TIMESTAMP WITH TIME ZONE, prediction DOUBLE, latency_ms DOUBLE,
    answered_at TIMESTAMP WITH TIME ZONE, segment VARCHAR, PRIMARY KEY (request_id, item)
"""
ROLE_SERVE, ROLE_CANARY, ROLE_SHADOW = "serve", "canary", "shadow"
SHADOW_SUFFIX = ":shadow"  # a shadow row's request id: the answered request's id plus this
COLUMNS = [
    "request_id",
    "item",
    "model",
    "version",
    "alias",
    "role",
    "symbol",
    "features_as_of",
    "prediction",
    "latency_ms",
    "answered_at",
]


@dataclass(frozen=True)
class Served:
    """One prediction of one answered request (``item``: its position in the request)."""

    request_id: str
    item: int
    model: str
    version: str
    alias: str | None
    role: str
    symbol: str | None
    features_as_of: str | None
    prediction: float
    latency_ms: float
    answered_at: str


class PredictionLogWriter:
    """Appends to this process's own segment; thread-safe. ``append`` returns once the lines are written."""

    def __init__(self, directory: Path, *, fsync_interval_s: float = 0.2) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = directory / f"{stamp}-{os.getpid()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, args=(fsync_interval_s,), daemon=True)
        self._syncer.start()

    def append(self, entries: Iterable[Served]) -> None:
        data = "".join(json.dumps(e.__dict__, separators=(",", ":")) + "\n" for e in entries).encode()
        with self._lock:
            view = memoryview(data)
            while view:  # a regular file takes the whole write; loop in case a signal cuts it short
                written = os.write(self._fd, view)
                view = view[written:]
            self._dirty = True

    def _sync_loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self.sync()

    def sync(self) -> None:
        """fsync what was appended so far, on a duplicate of the descriptor, outside the lock: appends (the
        request path) never wait for the disk."""
        with self._lock:
            if not self._dirty or self._closed.is_set():
                return
            self._dirty = False
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sync()
        with self._lock:
            if not self._closed.is_set():
                self._closed.set()
                os.close(self._fd)


def read_segment(path: Path) -> Iterator[dict[str, Any]]:
    """The complete lines of a segment (a last line without its newline was cut short by a kill: skipped)."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"prediction log {path}, line {number}: not JSON ({exc})") from exc


def _writer_alive(path: Path) -> bool:
    """Whether the process that writes the segment may still append to it (its pid is running)."""
    try:
        pid = int(path.stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ingest(conn: duckdb.DuckDBPyConnection, directory: Path, *, keep_s: float = 3600.0) -> dict[str, int]:
    """Copy every complete logged line into ``monitoring.served_predictions`` once (one transaction), then delete
    the segments that are fully in the warehouse, whose writer has exited and that are older than ``keep_s``.
    Returns counts: lines read, rows inserted, segments deleted."""
    table = warehouse.quote_table(SERVED_TABLE)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({SERVED_DDL})")
    segments = sorted(directory.glob("*.jsonl")) if directory.exists() else []
    rows = []
    for segment in segments:
        rows += [{**{c: line.get(c) for c in COLUMNS}, "segment": segment.name} for line in read_segment(segment)]
    inserted = 0
    if rows:
        frame = pd.DataFrame(rows, columns=[*COLUMNS, "segment"])
        frame = frame.drop_duplicates(["request_id", "item"])
        for column in ("features_as_of", "answered_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        conn.register("_served", frame)
        try:
            with warehouse.transaction(conn):
                before = warehouse.row_count(conn, SERVED_TABLE)
                conn.execute(
                    f"INSERT INTO {table} SELECT * FROM _served ANTI JOIN {table} AS _t USING (request_id, item)"
                )
                inserted = warehouse.row_count(conn, SERVED_TABLE) - before
        finally:
            conn.unregister("_served")
    deleted = 0
    now = time.time()
    for segment in segments:
        if not _writer_alive(segment) and now - segment.stat().st_mtime > keep_s:
            segment.unlink()
            deleted += 1
    return {"lines": len(rows), "inserted": inserted, "segments_deleted": deleted}


def replace_request(
    conn: duckdb.DuckDBPyConnection, request_id: str, entries: list[Served], *, own_transaction: bool = True
) -> int:
    """Write one request's predictions straight into ``monitoring.served_predictions`` (a writer that holds the
    warehouse already: batch inference), replacing whatever an earlier run wrote under ``request_id``. A
    re-run of the same request (a partition scored again) therefore leaves each (request, item) once, from the
    latest run. ``own_transaction=False``: inside the caller's transaction. Returns the rows written."""
    frame = pd.DataFrame([e.__dict__ for e in entries], columns=COLUMNS).assign(segment=None)
    for column in ("features_as_of", "answered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["segment"] = frame["segment"].astype(object)
    warehouse.replace_rows(
        conn,
        SERVED_TABLE,
        frame,
        where="request_id = ?",
        params=[request_id],
        create_sql=SERVED_DDL,
        own_transaction=own_transaction,
    )
    return len(frame)


def shadow_pairs(conn: duckdb.DuckDBPyConnection, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Served items of ``model`` answered in [start, end) that the challenger also scored in shadow: one row per
    item with the champion's and the challenger's version and prediction (``prediction_champion``,
    ``prediction_challenger``), the symbol and its features' time."""
    columns = [
        "request_id", "item", "symbol", "features_as_of", "answered_at", "version_champion", "prediction_champion",
        "version_challenger", "prediction_challenger",
    ]  # fmt: skip
    if not warehouse.table_exists(conn, SERVED_TABLE):
        return pd.DataFrame(columns=columns)
    return conn.execute(
        f"""
        SELECT s.request_id, s.item, s.symbol, s.features_as_of, s.answered_at, s.version AS version_champion,
               s.prediction AS prediction_champion, h.version AS version_challenger,
               h.prediction AS prediction_challenger
        FROM {SERVED_TABLE} s JOIN {SERVED_TABLE} h
          ON h.request_id = s.request_id || '{SHADOW_SUFFIX}' AND h.item = s.item AND h.role = '{ROLE_SHADOW}'
        WHERE s.model = ? AND s.role = '{ROLE_SERVE}' AND s.answered_at >= ? AND s.answered_at < ?
        ORDER BY s.answered_at, s.request_id, s.item
        """,
        [model, start, end],
    ).fetchdf()[columns]
