"""The raw folder: which files a run must read, each read once, and the files that cannot be read at all.

An index (a small SQLite file, shared by the sensor and the ingestion runs) keeps per file its size,
modification time, sha256, row count, first and last bar and the UTC days it has bars on, or the file-level
error when it cannot be read. An entry is trusted while the file's size and modification time are unchanged;
otherwise the file is hashed, and read again only when its content changed. A run for some days then reads
only the files with bars on those days, plus, in the run of the first partition, the files with no bar in any
partition (all rows before the first partition, in the future or unparseable, or no rows at all), so that their
rows are quarantined somewhere. Rows of a file that belong to no partition are quarantined by every run that
reads the file, replacing what an earlier run wrote for it.

A file that cannot be read (empty, not text, corrupt Parquet, duplicate or missing required columns) is listed in
``raw.quarantined_files`` by every run until it is fixed or removed; the bars it delivered before stay stored.
So is a file of bars of another frequency than the declared one (``MLOPS_BAR_INTERVAL``): the index keeps the
most common spacing of each symbol's consecutive bars in the file (a fact of the file), and a run or the sensor compares
it with the declared interval (``refusal``). Daily bars under an hourly setting all lie on the hourly grid: only
their spacing tells. A file with fewer than ``MIN_SPACINGS`` such spacings (one bar per symbol, say) is judged by
the grid alone.
"""

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from mlops_pipelines.lib.core.bars import format_interval, parse_interval
from mlops_pipelines.lib.ingestion.source_files import SourceFileError, read_empty_source, read_source_file
from mlops_pipelines.lib.ingestion.validation import outside_partitions, parse_utc

QUARANTINED_FILES_TABLE = "raw.quarantined_files"
QUARANTINED_FILES_DDL = """
    path VARCHAR NOT NULL, size BIGINT, sha256 VARCHAR NOT NULL, reason VARCHAR NOT NULL,
    first_seen_at TIMESTAMP WITH TIME ZONE NOT NULL, first_seen_run_id VARCHAR, last_seen_run_id VARCHAR
"""
_INDEX_DDL = """
    CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
        rows INTEGER, first_bar TEXT, last_bar TEXT, days TEXT NOT NULL, error TEXT, spacing_s REAL
    )
"""
_INDEX_COLUMNS = ("path", "size", "mtime_ns", "sha256", "rows", "first_bar", "last_bar", "days", "error", "spacing_s")
MIN_SPACINGS = 5  # consecutive-bar spacings a file needs before its median says which frequency it holds


@dataclass(frozen=True)
class FileEntry:
    """What the index knows of one file. ``days``: UTC days (YYYY-MM-DD) with at least one parseable bar."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int | None = None
    first_bar: str | None = None
    last_bar: str | None = None
    days: tuple[str, ...] = ()
    error: str | None = None  # why the file cannot be read at all
    spacing_s: float | None = None  # median seconds between a symbol's consecutive bars (None: too few to tell)

    def has_no_partition(self, first_day: str, latest_day: str) -> bool:
        """No bar on a day between the first partition and the latest day a bar may have (now + skew)."""
        return not any(first_day <= day <= latest_day for day in self.days)


@dataclass(frozen=True)
class SourceBatch:
    """What a run gets from the source: the rows of its window plus the rows that belong to no partition, the
    files it read (whose partition-less quarantined rows it replaces) and the files that cannot be read."""

    bars: pd.DataFrame
    files_read: list[str] = field(default_factory=list)
    unreadable: list[FileEntry] = field(default_factory=list)


class FolderIndex:
    """The index over one SQLite connection (``path`` None: in memory, for one use)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def stored(self, path: Path) -> FileEntry | None:
        row = self._conn.execute("SELECT * FROM files WHERE path = ?", [str(path)]).fetchone()
        if row is None:
            return None
        path_, size, mtime_ns, sha256, rows, first_bar, last_bar, days, error, spacing_s = row
        return FileEntry(
            path_, size, mtime_ns, sha256, rows, first_bar, last_bar, tuple(json.loads(days)), error, spacing_s
        )

    def refresh(
        self, path: Path, needed: Callable[[FileEntry], bool] | None = None
    ) -> tuple[FileEntry, pd.DataFrame | None]:
        """The file's current entry, and its rows (``read_source_file``) when ``needed(entry)`` says the caller
        wants them. The file is read at most once: not at all when its entry is current and it is not needed.
        Raises FileNotFoundError when the file is gone; a file that cannot be opened gets an error entry."""
        stat = path.stat()
        entry = self.stored(path)
        data: bytes | None = None
        frame: pd.DataFrame | None = None
        if entry is None or (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            try:
                data = path.read_bytes()  # stat first: a file that changes meanwhile is seen as changed next time
            except FileNotFoundError:
                raise
            except OSError as exc:  # not indexed: tried again next time
                reason = f"{path}: cannot be opened ({exc.strerror or exc})"
                return FileEntry(str(path), stat.st_size, stat.st_mtime_ns, "", error=reason), None
            digest = hashlib.sha256(data).hexdigest()
            if entry is not None and entry.sha256 == digest:  # touched, same content
                entry = replace(entry, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            else:
                entry, frame = _scan(path, data, digest, stat.st_size, stat.st_mtime_ns)
            self._store(entry)
        if needed is None or entry.error is not None or not needed(entry):
            return entry, None
        if frame is None:
            frame = read_source_file(path, data if data is not None else path.read_bytes())
        return entry, frame

    def _store(self, entry: FileEntry) -> None:
        with self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO files VALUES ({', '.join('?' * len(_INDEX_COLUMNS))})",
                [
                    entry.path,
                    entry.size,
                    entry.mtime_ns,
                    entry.sha256,
                    entry.rows,
                    entry.first_bar,
                    entry.last_bar,
                    json.dumps(list(entry.days)),
                    entry.error,
                    entry.spacing_s,
                ],
            )


@contextmanager
def open_index(path: Path | None) -> Iterator[FolderIndex]:
    """The index at ``path`` (created if missing; WAL, so the sensor and a run can use it at once). It is a
    cache of what the files say: an index file SQLite cannot read is moved aside (``.corrupt``) and rebuilt."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    try:
        yield FolderIndex(conn)
    finally:
        conn.close()


def _connect(path: Path | None) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:" if path is None else path, timeout=30)
    try:
        if path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_INDEX_DDL)
        if tuple(row[1] for row in conn.execute("PRAGMA table_info(files)")) != _INDEX_COLUMNS:
            with conn:  # an index of an older layout: it is a cache, rebuilt from the files
                conn.execute("DROP TABLE files")
                conn.execute(_INDEX_DDL)
        conn.execute("SELECT count(*) FROM files").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        if path is None or "locked" in str(exc):
            raise
        path.replace(path.with_name(path.name + ".corrupt"))
        return _connect(path)
    return conn


def _scan(path: Path, data: bytes, digest: str, size: int, mtime_ns: int) -> tuple[FileEntry, pd.DataFrame | None]:
    entry = FileEntry(str(path), size, mtime_ns, digest)
    try:
        frame = read_source_file(path, data)
    except SourceFileError as exc:
        return replace(entry, error=str(exc)), None
    ts = parse_utc(frame["timestamp"]).dropna()
    if ts.empty:
        return replace(entry, rows=len(frame)), frame
    days = tuple(sorted(pd.DatetimeIndex(ts.dt.floor("D").unique()).strftime("%Y-%m-%d")))
    spacing = typical_spacing(frame["symbol"], parse_utc(frame["timestamp"]))
    return replace(
        entry,
        rows=len(frame),
        first_bar=ts.min().isoformat(),
        last_bar=ts.max().isoformat(),
        days=days,
        spacing_s=spacing.total_seconds() if spacing is not None else None,
    ), frame


def typical_spacing(symbol: pd.Series, timestamp: pd.Series) -> timedelta | None:
    """The most common time between a symbol's consecutive distinct bars, over all symbols (ties: the shortest):
    the frequency the bars are at. Nights, weekends and stray bars far outside the data (which validation
    quarantines) are rarer spacings and do not move it, as they would move a median. None below
    ``MIN_SPACINGS``."""
    bars = pd.DataFrame({"symbol": symbol.astype("string").str.strip(), "timestamp": timestamp})
    bars = bars.dropna().drop_duplicates().sort_values(["symbol", "timestamp"])
    same_symbol = bars["symbol"].eq(bars["symbol"].shift()).fillna(False).to_numpy(dtype=bool)
    spacings = bars["timestamp"].diff()[same_symbol]
    if len(spacings) < MIN_SPACINGS:
        return None
    counts = spacings.value_counts()
    return pd.Timedelta(counts[counts == counts.max()].index.min()).to_pytimedelta()


def refusal(entry: FileEntry, bar_interval: timedelta) -> str | None:
    """Why the whole file is refused (listed in ``raw.quarantined_files``, its rows not ingested): it cannot be
    read, or its bars are of another frequency than the declared ``bar_interval``; None when it is not."""
    if entry.error is not None or entry.spacing_s is None or entry.spacing_s == bar_interval.total_seconds():
        return entry.error
    declared, detected = format_interval(bar_interval), format_interval(timedelta(seconds=entry.spacing_s))
    try:
        parse_interval(detected)
        advice = f"if the source delivers {detected} bars, set MLOPS_BAR_INTERVAL={detected}; if not, fix the file"
    except ValueError:
        advice = "fix the file, or move it out of the raw folder"
    return (
        f"{entry.path}: bars {detected} apart (the commonest spacing of a symbol's consecutive bars in the file), but "
        f"MLOPS_BAR_INTERVAL declares {declared} bars: {advice}"
    )


def load_window(
    index: FolderIndex,
    files: Sequence[Path],
    start: datetime,
    end: datetime,
    *,
    first_bar: datetime,
    latest: datetime,
    bar_interval: timedelta,
) -> SourceBatch:
    """Rows for ``[start, end)`` and the rows that belong to no partition (unparseable, before ``first_bar``,
    after ``latest``) from the files that can hold them; each file read at most once. Files refused as a whole
    (unreadable, or bars of another frequency than ``bar_interval``: ``refusal``) come back in ``unreadable``
    with the reason as their ``error``."""
    window_days = {d.strftime("%Y-%m-%d") for d in pd.date_range(start, end, freq="D", inclusive="left")}
    first_day, latest_day = f"{first_bar:%Y-%m-%d}", f"{latest:%Y-%m-%d}"
    has_first_partition = start <= first_bar < end

    def needed(entry: FileEntry) -> bool:
        if refusal(entry, bar_interval) is not None:
            return False
        if not window_days.isdisjoint(entry.days):
            return True
        return has_first_partition and entry.has_no_partition(first_day, latest_day)

    frames: list[pd.DataFrame] = []
    read: list[str] = []
    unreadable: list[FileEntry] = []
    for path in files:
        try:
            entry, frame = index.refresh(path, needed)
        except FileNotFoundError:  # removed since the folder was listed
            continue
        problem = refusal(entry, bar_interval)
        if problem is not None:
            unreadable.append(replace(entry, error=problem))
            continue
        if frame is None:
            continue
        read.append(str(path))
        if not set(entry.days) <= window_days:  # rows of other days: keep the window's and the partition-less
            ts = parse_utc(frame["timestamp"])
            in_window = (ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))
            frame = frame[in_window | outside_partitions(ts, first_bar=first_bar, latest=latest)]
        frames.append(frame.assign(source_mtime_ns=entry.mtime_ns))
    bars = pd.concat(frames, ignore_index=True) if frames else read_empty_source()
    return SourceBatch(bars=bars, files_read=read, unreadable=unreadable)


def record_unreadable(
    conn: duckdb.DuckDBPyConnection, unreadable: Sequence[FileEntry], *, run_id: str, now: datetime
) -> None:
    """Make ``raw.quarantined_files`` the list of files that cannot be read now (call inside the run's
    transaction); a file already listed with the same content keeps when, and in which run, it was first seen."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {QUARANTINED_FILES_TABLE} ({QUARANTINED_FILES_DDL})")
    seen = {
        (path, sha256): (first_at, first_run)
        for path, sha256, first_at, first_run in conn.execute(
            f"SELECT path, sha256, first_seen_at, first_seen_run_id FROM {QUARANTINED_FILES_TABLE}"
        ).fetchall()
    }
    rows = [
        (e.path, e.size, e.sha256, e.error, *seen.get((e.path, e.sha256), (now, run_id)), run_id) for e in unreadable
    ]
    conn.execute(f"DELETE FROM {QUARANTINED_FILES_TABLE}")
    if rows:
        conn.executemany(f"INSERT INTO {QUARANTINED_FILES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
