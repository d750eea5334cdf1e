"""The user's own bar files: which files a raw folder holds, and one CSV or Parquet file read as bars.

A file's rows come back as they arrived (CSV: text), with the file and line of each, for validation to accept
or quarantine (``lib/ingestion/validation.py``); a file that cannot be read at all raises ``SourceFileError``
naming it. The README's "Your own market data" is the user-facing description of the format.
"""

import codecs
import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_pipelines.lib.core.errors import MlopsError

REQUIRED_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("sector", "available_at")
SUPPORTED_SUFFIXES = (".csv", ".parquet")


class SourceFileError(MlopsError, ValueError):
    """A source file cannot be read as bars at all (empty, not text, corrupt, duplicate or missing columns).
    The message names the file and, where known, the line."""


def read_source_file(path: Path, data: bytes | None = None) -> pd.DataFrame:
    """Read one CSV or Parquet file (``data``: its bytes, when the caller already has them) as bars.

    Returns the bar columns the file has, as they arrived (CSV: text), plus ``source_file``, ``source_row``
    (CSV: the line in the file, the header being line 1; Parquet: the 0-based row index) and ``line_error``
    (why the line does not fit the header, else None; validation quarantines those rows with it).

    CSV rules: UTF-8 text (a byte-order mark is allowed), a header line, ``,`` separators, ``"`` quotes. A line
    with more fields than the header is rejected alone (quarantined with its line number); a line with fewer
    has its missing trailing fields empty; a line without any value (blank, or separators only) is no bar and
    is skipped. Raises :class:`SourceFileError` naming the file, and the line where there is one, when the file
    as a whole cannot be read: empty, not text, not Parquet, duplicate or missing required columns.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SourceFileError(f"{path}: unsupported file type {path.suffix!r}; use one of {SUPPORTED_SUFFIXES}")
    if data is None:
        data = path.read_bytes()
    if not data:
        raise SourceFileError(f"{path}: empty file (0 bytes)")
    frame = _read_csv(path, data) if suffix == ".csv" else _read_parquet(path, data)
    keep = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    frame = frame[[*keep, "source_row", "line_error"]].reset_index(drop=True)
    frame.insert(len(keep), "source_file", str(path))
    return frame


def _columns(path: Path, names: list[object]) -> list[str]:
    """Normalized column names (stripped, lower case); duplicate or missing required columns raise."""
    columns = [str(c).strip().lower() for c in names]
    first: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if name in first:
            raise SourceFileError(f"{path}: line 1: duplicate column {name!r} (columns {first[name]} and {i})")
        first[name] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SourceFileError(
            f"{path}: missing required column {missing[0]!r}"
            + (f" (and {', '.join(repr(m) for m in missing[1:])})" if len(missing) > 1 else "")
            + f"; expected columns {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    return columns


def _read_parquet(path: Path, data: bytes) -> pd.DataFrame:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SourceFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    columns = _columns(path, list(table.column_names))
    frame = table.to_pandas()
    frame.columns = columns
    frame["source_row"] = np.arange(len(frame))
    frame["line_error"] = None
    return frame


def _read_csv(path: Path, data: bytes) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceFileError(
            f"{path}: line {line}: not UTF-8 text (byte {exc.start}); is it really a CSV file?"
        ) from exc
    first_line = re.match(r"[^\r\n]*", text)
    header = next(csv.reader([first_line.group() if first_line else ""]), [])
    if not any(h.strip() for h in header):
        raise SourceFileError(f"{path}: line 1: no header line (expected {', '.join(REQUIRED_COLUMNS)})")
    columns = _columns(path, list(header))
    # Fast path: pandas' C parser. It cuts a field at a NUL byte and reports no line numbers of its own, so
    # it is used only when each row is one line of the file (no quoted line breaks) and there is no NUL.
    if b"\x00" not in data:
        try:
            frame = pd.read_csv(
                io.BytesIO(data[3:] if data.startswith(codecs.BOM_UTF8) else data),
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
            )
        except pd.errors.ParserError:  # a line with more fields than the header: the exact path says which
            frame = None
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if frame is not None and len(frame) == lines - 1:
            frame.columns = columns
            # a line without any value is no bar: look at the rows whose first field is empty (few, if any)
            maybe_blank = np.flatnonzero(frame[columns[0]].isna().to_numpy())
            blank = maybe_blank[frame.iloc[maybe_blank].isna().all(axis=1).to_numpy()]
            frame["source_row"] = np.arange(len(frame)) + 2
            frame["line_error"] = None
            return frame.drop(index=frame.index[blank]) if len(blank) else frame
    return _read_csv_exactly(path, text, columns)


def _read_csv_exactly(path: Path, text: str, columns: list[str]) -> pd.DataFrame:
    """The csv module, record by record: exact line numbers, NUL bytes kept, long lines rejected alone."""
    reader = csv.reader(io.StringIO(text, newline=""))
    n = len(columns)
    records: list[list[str | None]] = []
    lines: list[int] = []
    errors: list[str | None] = []
    try:
        next(reader)
        line = reader.line_num + 1
        for record in reader:
            first_line, line = line, reader.line_num + 1
            if not any(record):
                continue  # blank, or separators only: no bar
            error = None
            if len(record) > n:
                error = f"line: more fields than the header [{len(record)} fields, the header has {n}]"
            fields: list[str | None] = [f if f != "" else None for f in record[:n]]
            records.append(fields + [None] * (n - len(fields)))
            lines.append(first_line)
            errors.append(error)
    except csv.Error as exc:
        raise SourceFileError(f"{path}: line {reader.line_num}: {exc}") from exc
    frame = pd.DataFrame(records, columns=columns, dtype=object)
    frame["source_row"] = np.asarray(lines, dtype="int64")
    frame["line_error"] = pd.Series(errors, dtype=object)
    return frame


def list_source_files(raw_dir: Path) -> list[Path]:
    if not raw_dir.exists():
        return []
    return sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def read_empty_source() -> pd.DataFrame:
    """What an empty raw folder yields: the file schema with no rows."""
    columns = (*REQUIRED_COLUMNS, "source_file", "source_row", "line_error")
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
