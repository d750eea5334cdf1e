"""Row-level validation of raw bars: every row is either accepted or quarantined with its reasons.

Timestamp rule: values with an offset or ``Z`` are converted to UTC; values without one are taken to be UTC
already (the documented schema says timestamps are UTC). Nothing is shifted by the machine's local time zone.
A timestamp is a bar's open time and lies on the grid of the declared bar interval (multiples of it from
midnight UTC); a bar closes, and is available by default, one interval later.

Time bounds: a bar belongs to a daily partition only between the first partition and now plus the allowed
clock skew. Rows outside (before the first partition, in the future, or with an unparseable timestamp) are
quarantined under a partition key of their own, never dropped.

Duplicates of a ``(symbol, timestamp)`` among otherwise valid rows: the latest arrival is kept - the latest
``available_at``, then the most recently modified file, then the file path that sorts last; within one file,
the first line. The others are quarantined naming the row that was kept.
"""

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from mlops_pipelines.lib.core.bars import DEFAULT_BAR_CLOCK, format_interval
from mlops_pipelines.lib.ingestion.market_bars import (
    BAR_COLUMNS,
    OUTSIDE_PARTITIONS,
    QUARANTINE_COLUMNS,
    UNPARSEABLE_PARTITION,
)

PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
# A bar may be stamped this far past our clock (the vendor's clock runs ahead) and still count as present.
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ValidationResult:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame

    @property
    def quarantine_ratio(self) -> float:
        total = len(self.accepted) + len(self.quarantined)
        return len(self.quarantined) / total if total else 0.0


def outside_partitions(timestamp: pd.Series, *, first_bar: datetime | None, latest: datetime) -> pd.Series:
    """Parsed timestamps that belong to no daily partition: unparseable, before ``first_bar``, after ``latest``."""
    outside = timestamp.isna() | (timestamp > pd.Timestamp(latest))
    if first_bar is not None:
        outside |= timestamp < pd.Timestamp(first_bar)
    return outside


def market_start_advice(earliest: date, first_bar: datetime, *, files: Sequence[str], bars: int | None = None) -> str:
    """The one message for bars before the first partition: when they start, in which files (the earliest
    bar's first), and what to set to ingest them (they are quarantined meanwhile, never dropped)."""
    count = f"{bars:,} bars" if bars is not None else "bars"
    others = len(files) - 1
    where = files[0] + (f" and {others} more file{'s' if others > 1 else ''}" if others else "")
    return (
        f"bars start {earliest:%Y-%m-%d} ({where}), the first partition is {first_bar:%Y-%m-%d}: "
        f"set MLOPS_MARKET_START={earliest:%Y-%m-%d} to ingest them; until then the {count} before "
        f"{first_bar:%Y-%m-%d} are quarantined under partition key {OUTSIDE_PARTITIONS}, not ingested"
    )


def validate_bars(
    frame: pd.DataFrame,
    *,
    now: datetime | None = None,
    universe: Collection[str] | None = None,
    first_bar: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    bar_interval: timedelta = DEFAULT_BAR_CLOCK.interval,
) -> ValidationResult:
    """Split bars into accepted rows (typed, raw schema) and quarantined rows (original text + reasons).

    ``universe``: the symbols to accept (None: any). ``first_bar``: the start of the first partition (None: no
    lower bound). Timestamps and ``available_at`` later than ``now + max_clock_skew`` are in the future.
    ``bar_interval``: the source's declared bar length (default hourly): timestamps off its grid are rejected.
    Optional input columns: ``line_error`` (the reader's reason for a malformed line), ``source_mtime_ns``
    (the file's modification time, for the duplicate rule)."""
    now = now or datetime.now(UTC)
    latest = now + max_clock_skew
    if "source_row" not in frame.columns:
        frame = frame.assign(source_row=np.arange(len(frame)))
    rows = _Rows(frame)
    if "line_error" in frame.columns:
        line_error = frame["line_error"].notna().to_numpy()
        rows.reasons[line_error] = frame["line_error"].to_numpy()[line_error]
    symbol, sector = _check_names(frame, rows, universe)
    timestamp = _check_timestamps(frame, rows, first_bar, latest, max_clock_skew, bar_interval)
    numbers = _check_numbers(frame, rows)
    available = _check_available_at(frame, rows, timestamp + bar_interval, latest, max_clock_skew)
    _flag_duplicates(frame, symbol, timestamp, available, rows.reasons)

    ok = rows.reasons == ""
    accepted = pd.DataFrame(
        {
            "symbol": symbol[ok].astype(object),
            "sector": (
                sector[ok].fillna("unknown").replace("", "unknown").astype(object) if sector is not None else "unknown"
            ),
            "timestamp": timestamp[ok],
            **{c: numbers[c][ok] for c in NUMERIC_COLUMNS},
            "available_at": available[ok],
            "source_file": frame["source_file"][ok].astype(object),
        },
        columns=list(BAR_COLUMNS),
    ).reset_index(drop=True)
    for column in ("timestamp", "available_at"):
        accepted[column] = accepted[column].astype("datetime64[us, UTC]")
    quarantined = _quarantined(frame, rows.reasons, timestamp, first_bar, latest, now)
    return ValidationResult(accepted=accepted, quarantined=quarantined)


class _Rows:
    """The reasons found so far, per row ("" while a row has none)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.reasons = np.full(len(frame), "", dtype=object)

    def flag(self, mask: np.ndarray | pd.Series, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        reasons = self.reasons
        reasons[mask] = np.where(reasons[mask] == "", reason, reasons[mask] + "; " + reason)


def _check_names(
    frame: pd.DataFrame, rows: _Rows, universe: Collection[str] | None
) -> tuple[pd.Series, pd.Series | None]:
    """The symbol and the sector (None when the source has none), stripped."""
    symbol = frame["symbol"].astype("string").str.strip()
    rows.flag(symbol.isna() | (symbol == ""), "symbol: missing")
    rows.flag(_has_control_characters(symbol), "symbol: contains control characters")
    sector = frame["sector"].astype("string").str.strip() if "sector" in frame.columns else None
    if sector is not None:
        rows.flag(_has_control_characters(sector), "sector: contains control characters")
    if universe is not None:
        rows.flag(symbol.notna() & (symbol != "") & ~symbol.isin(list(universe)), "symbol: not in the symbol universe")
    return symbol, sector


def _check_timestamps(
    frame: pd.DataFrame,
    rows: _Rows,
    first_bar: datetime | None,
    latest: datetime,
    skew: timedelta,
    bar_interval: timedelta,
) -> pd.Series:
    timestamp = parse_utc(frame["timestamp"])
    rows.flag(timestamp.isna(), "timestamp: missing or unparseable")
    off_grid = timestamp.notna() & (timestamp != timestamp.dt.floor(bar_interval))  # NaT != x is True
    label = format_interval(bar_interval)
    rows.flag(
        off_grid.to_numpy(),
        f"timestamp: not on the {label} grid (MLOPS_BAR_INTERVAL={label}: a bar opens at a multiple of {label} "
        "from midnight UTC)",
    )
    if first_bar is not None:
        rows.flag(
            (timestamp < pd.Timestamp(first_bar)).to_numpy(),
            f"timestamp: before the first partition ({first_bar:%Y-%m-%d})",
        )
    rows.flag(
        (timestamp > pd.Timestamp(latest)).to_numpy(),
        f"timestamp: in the future beyond the allowed clock skew ({skew.total_seconds():g} s)",
    )
    return timestamp


def _check_numbers(frame: pd.DataFrame, rows: _Rows) -> dict[str, pd.Series]:
    numbers = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in NUMERIC_COLUMNS}
    for column, values in numbers.items():
        rows.flag(~np.isfinite(values.to_numpy()), f"{column}: missing or not a finite number")
    for column in PRICE_COLUMNS:
        rows.flag(numbers[column].to_numpy() <= 0, f"{column}: non-positive price")
    high, low = numbers["high"].to_numpy(), numbers["low"].to_numpy()
    rows.flag(high < low, "high < low")
    for column in ("open", "close"):
        values = numbers[column].to_numpy()
        rows.flag((values < low) | (values > high), f"{column} outside [low, high]")
    rows.flag(numbers["volume"].to_numpy() < 0, "volume: negative")
    return numbers


def _check_available_at(
    frame: pd.DataFrame, rows: _Rows, bar_close: pd.Series, latest: datetime, skew: timedelta
) -> pd.Series:
    """When each bar reached us: the given ``available_at``, else the bar's close."""
    if "available_at" not in frame.columns:
        return bar_close
    raw_available = frame["available_at"]
    available = parse_utc(raw_available)
    given = raw_available.notna() & (raw_available.astype("string").str.strip() != "")
    rows.flag(given & available.isna(), "available_at: unparseable")
    rows.flag((available < bar_close).fillna(False).to_numpy(), "available_at: before the bar closed")
    rows.flag(
        (available > pd.Timestamp(latest)).fillna(False).to_numpy(),
        f"available_at: in the future beyond the allowed clock skew ({skew.total_seconds():g} s)",
    )
    return available.fillna(bar_close)


def _quarantined(
    frame: pd.DataFrame,
    reasons: np.ndarray,
    timestamp: pd.Series,
    first_bar: datetime | None,
    latest: datetime,
    now: datetime,
) -> pd.DataFrame:
    """The rejected rows as they arrived (text), with their reasons and partition keys."""
    bad = reasons != ""
    partition = timestamp[bad].dt.strftime("%Y-%m-%d").fillna(UNPARSEABLE_PARTITION)
    partition[outside_partitions(timestamp[bad], first_bar=first_bar, latest=latest) & timestamp[bad].notna()] = (
        OUTSIDE_PARTITIONS
    )
    quarantined = pd.DataFrame(
        {
            "partition_key": partition.astype(object),
            "source_file": frame["source_file"][bad].astype(object),
            "source_row": frame["source_row"][bad].astype("int64"),
            "reason": reasons[bad],
            "symbol": _as_text(frame["symbol"][bad]),
            "timestamp": _as_text(frame["timestamp"][bad]),
            **{c: _as_text(frame[c][bad]) for c in NUMERIC_COLUMNS},
        },
        columns=list(QUARANTINE_COLUMNS)[:-1],
    ).reset_index(drop=True)
    quarantined["quarantined_at"] = pd.Series([now] * len(quarantined), dtype="datetime64[us, UTC]")
    return quarantined


def _flag_duplicates(
    frame: pd.DataFrame, symbol: pd.Series, timestamp: pd.Series, available: pd.Series, reasons: np.ndarray
) -> None:
    """Among rows with no other reason, keep the latest arrival of each (symbol, timestamp) (see the module
    docstring) and quarantine the others, naming the file and row that was kept."""
    valid_rows = np.flatnonzero(reasons == "")
    keys = pd.DataFrame({"symbol": symbol, "timestamp": timestamp}).iloc[valid_rows]
    contested = valid_rows[keys.duplicated(keep=False).to_numpy()]
    if not len(contested):
        return
    mtime = frame["source_mtime_ns"] if "source_mtime_ns" in frame.columns else pd.Series(0, index=frame.index)
    candidates = pd.DataFrame(
        {
            "symbol": symbol,
            "timestamp": timestamp,
            "available": available,
            "mtime": mtime,
            "file": frame["source_file"].astype(str),
            "row": frame["source_row"],
            "position": np.arange(len(frame)),
        }
    ).iloc[contested]
    ordered = candidates.sort_values(
        ["available", "mtime", "file", "row"], ascending=[False, False, False, True], kind="stable"
    )
    losing = ordered.duplicated(["symbol", "timestamp"], keep="first")
    kept = ordered[~losing][["symbol", "timestamp", "file", "row"]]
    losers = ordered[losing].merge(kept, on=["symbol", "timestamp"], suffixes=("", "_kept"))
    reasons[losers["position"].to_numpy()] = (
        "duplicate (symbol, timestamp) [kept: " + losers["file_kept"] + ":" + losers["row_kept"].astype(str) + "]"
    ).to_numpy()


def _has_control_characters(values: pd.Series) -> np.ndarray:
    """Per row: the text holds a control character (a NUL byte, a line break...). Checked once per distinct value."""
    bad = [v for v in values.dropna().unique() if _CONTROL_CHARACTERS.search(str(v))]
    return values.isin(bad).to_numpy() if bad else np.zeros(len(values), dtype=bool)


_HAS_OFFSET = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def parse_utc(values: pd.Series) -> pd.Series:
    """Timestamps to UTC: offsets honoured, values without one taken as UTC, unparseable ones NaT.

    Values with and without an offset are parsed apart: parsed together, pandas applies the first value's
    offset to the naive ones.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    text = values.astype("string").str.strip()
    has_offset = text.str.contains(_HAS_OFFSET, regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="ISO8601")
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], errors="coerce", format="ISO8601")
        out[~has_offset] = naive.dt.tz_localize("UTC") if hasattr(naive, "dt") else naive
    return out


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype("string").astype(object).where(values.notna(), None)
