"""Market-data sources: a deterministic synthetic market and a folder of the user's own files.

Both return bars in the raw schema, one row per (symbol, hourly bar), timestamps in UTC:

    symbol, sector, timestamp (bar open), open, high, low, close, volume, available_at, source_file

``available_at`` is when the bar reached us: the bar's close (timestamp + 1 hour) plus the feed's latency.
Features computed from a bar carry it as their created time (ARCHITECTURE §5, "Created time").
"""

import codecs
import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.signal import lfilter

from mlops_pipelines.lib.core.errors import MlopsError

BAR_INTERVAL = timedelta(hours=1)
REQUIRED_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("sector", "available_at")
SUPPORTED_SUFFIXES = (".csv", ".parquet")
SYNTHETIC_SOURCE = "synthetic"


class SourceFileError(MlopsError, ValueError):
    """A source file cannot be read as bars at all (empty, not text, corrupt, duplicate or missing columns).
    The message names the file and, where known, the line."""


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """A seeded market: symbols in sectors, hourly bars, calm/volatile regimes and an optional regime shift."""

    n_symbols: int = 24
    n_sectors: int = 4
    seed: int = 7
    origin: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    base_vol_hourly: float = 0.004
    regime_shift_at: datetime | None = datetime(2026, 2, 20, tzinfo=UTC)
    shift_vol_multiplier: float = 2.5
    shift_drift_hourly: float = -0.0004
    shift_volume_multiplier: float = 1.8
    feed_latency: timedelta = timedelta(seconds=30)
    bad_row_rate: float = 0.0
    momentum: float = 0.3  # AR(1) coefficient of idiosyncratic hourly returns: a weak, learnable signal
    sectors: tuple[str, ...] = field(
        default=("technology", "financials", "energy", "healthcare", "industrials", "consumer", "utilities")
    )

    def symbols(self) -> list[str]:
        return [f"SYM{i:04d}" for i in range(self.n_symbols)]

    def sector_of(self) -> list[str]:
        return [self.sectors[i % min(self.n_sectors, len(self.sectors))] for i in range(self.n_symbols)]


def generate_bars(config: SyntheticMarketConfig, start: datetime, end: datetime) -> pd.DataFrame:
    """Bars with ``start <= timestamp < end``, identical whichever window they are generated in.

    The path is always simulated from ``config.origin``, so day D generated alone equals day D generated
    inside a year: partitions can be (re)materialized independently.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware UTC datetimes")
    if end <= start or end <= config.origin:
        return _empty_raw_frame()
    n_steps = int((end - config.origin) / BAR_INTERVAL)
    first = max(0, int(np.ceil((start - config.origin) / BAR_INTERVAL)))
    n_sym = config.n_symbols
    n_sec = min(config.n_sectors, len(config.sectors))
    times = pd.date_range(config.origin, periods=n_steps, freq="h", tz="UTC")
    params = np.random.default_rng([config.seed, 0])
    vol_scale = params.uniform(0.6, 1.6, n_sym)
    start_price = params.uniform(20.0, 400.0, n_sym)
    base_volume = params.uniform(5e4, 5e5, n_sym)
    draws = _daily_draws(config.seed, n_steps, n_sym, n_sec)

    # Volatility regimes: a two-state Markov chain shared by the market (calm 1x, volatile 2x).
    regime = np.zeros(n_steps)
    state = 0
    for i, u in enumerate(draws["switch"]):
        if (state == 0 and u < 0.004) or (state == 1 and u < 0.02):
            state = 1 - state
        regime[i] = state
    vol = config.base_vol_hourly * (1.0 + regime)[:, None] * vol_scale[None, :]
    drift = np.zeros((n_steps, 1))
    volume_level = np.ones((n_steps, 1))
    if config.regime_shift_at is not None:
        after = np.asarray(times >= pd.Timestamp(config.regime_shift_at))[:, None]
        vol = np.where(after, vol * config.shift_vol_multiplier, vol)
        drift = np.where(after, config.shift_drift_hourly, 0.0)
        volume_level = np.where(after, config.shift_volume_multiplier, 1.0)

    sector_idx = np.arange(n_sym) % n_sec
    idio = lfilter([1.0], [1.0, -config.momentum], draws["idio"], axis=0) * np.sqrt(1 - config.momentum**2)
    shocks = 0.5 * draws["market"] + 0.4 * draws["sector"][:, sector_idx] + 0.76 * idio
    log_ret = drift + vol * shocks
    close = start_price[None, :] * np.exp(np.cumsum(log_ret, axis=0))
    open_ = np.vstack([start_price[None, :], close[:-1]]) * np.exp(0.0002 * draws["gap"])
    high = np.maximum(open_, close) * np.exp(np.abs(draws["upper_wick"]) * vol * 0.6)
    low = np.minimum(open_, close) * np.exp(-np.abs(draws["lower_wick"]) * vol * 0.6)
    volume = base_volume[None, :] * volume_level * np.exp(0.4 * draws["volume"] + 40 * np.abs(log_ret))

    sl = slice(first, n_steps)
    n_rows = n_steps - first
    ts = np.repeat(times[sl].to_numpy(), n_sym)
    frame = pd.DataFrame(
        {
            "symbol": np.tile(np.array(config.symbols(), dtype=object), n_rows),
            "sector": np.tile(np.array(config.sector_of(), dtype=object), n_rows),
            "timestamp": pd.DatetimeIndex(ts, tz="UTC"),
            "open": open_[sl].ravel(),
            "high": high[sl].ravel(),
            "low": low[sl].ravel(),
            "close": close[sl].ravel(),
            "volume": np.round(volume[sl].ravel()),
        }
    )
    frame["available_at"] = frame["timestamp"] + BAR_INTERVAL + config.feed_latency
    frame["source_file"] = SYNTHETIC_SOURCE
    if config.bad_row_rate > 0:
        frame = _inject_bad_rows(frame, config.bad_row_rate, config.seed)
    return _with_micro_timestamps(frame)


def _daily_draws(seed: int, n_steps: int, n_sym: int, n_sec: int) -> dict[str, np.ndarray]:
    """Random draws in one block per day, each from its own seeded stream.

    A window's values therefore do not depend on how far the simulation runs past it.
    """
    shapes = {
        "switch": (24,),
        "market": (24, 1),
        "sector": (24, n_sec),
        "idio": (24, n_sym),
        "gap": (24, n_sym),
        "upper_wick": (24, n_sym),
        "lower_wick": (24, n_sym),
        "volume": (24, n_sym),
    }
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in shapes}
    for day in range(-(-n_steps // 24)):
        rng = np.random.default_rng([seed, 1, day])
        for name, shape in shapes.items():
            blocks[name].append(rng.random(shape) if name == "switch" else rng.standard_normal(shape))
    return {name: np.concatenate(parts)[:n_steps] for name, parts in blocks.items()}


def _inject_bad_rows(frame: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    """Corrupt a deterministic sample of rows the way real feeds do, so the quarantine path is exercised."""
    frame = frame.copy()
    # Decide per bar from a hash of (seed, symbol, timestamp): independent of the generated window.
    keys = frame["symbol"].astype(str) + "|" + frame["timestamp"].astype(str) + f"|{seed}"
    u = pd.Series(
        [int(hashlib.blake2b(k.encode(), digest_size=4).hexdigest(), 16) / 2**32 for k in keys], index=frame.index
    )
    bad = (u < rate).to_numpy()
    kind = (u * 1e6).astype(int).to_numpy() % 3
    frame.loc[bad & (kind == 0), "close"] = np.nan
    frame.loc[bad & (kind == 1), "low"] = frame["high"] * 1.01
    frame.loc[bad & (kind == 2), "volume"] = -1.0
    return frame


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


def _with_micro_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("timestamp", "available_at"):
        frame[column] = frame[column].astype("datetime64[us, UTC]")
    return frame


def _empty_raw_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "sector": pd.Series(dtype=object),
            "timestamp": pd.Series(dtype="datetime64[us, UTC]"),
            **{c: pd.Series(dtype=float) for c in ("open", "high", "low", "close", "volume")},
            "available_at": pd.Series(dtype="datetime64[us, UTC]"),
            "source_file": pd.Series(dtype=object),
        }
    )
    return frame


def read_empty_source() -> pd.DataFrame:
    """What an empty raw folder yields: the file schema with no rows."""
    columns = (*REQUIRED_COLUMNS, "source_file", "source_row", "line_error")
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
