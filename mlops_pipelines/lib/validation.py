"""Row-level validation of raw bars: every row is either accepted or quarantined with its reasons.

Timestamp rule (RELIABILITY #21): values with an offset or ``Z`` are converted to UTC; values without one
are taken to be UTC already (the documented schema says timestamps are UTC). Nothing is shifted by the
machine's local time zone.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlops_pipelines.lib.market_data import BAR_INTERVAL

PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
RAW_COLUMNS = (
    "symbol",
    "sector",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "available_at",
    "source_file",
)
QUARANTINE_COLUMNS = (
    "partition_key",
    "source_file",
    "source_row",
    "reason",
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quarantined_at",
)
UNPARSEABLE_PARTITION = "__unparseable__"


@dataclass(frozen=True)
class ValidationResult:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame

    @property
    def quarantine_ratio(self) -> float:
        total = len(self.accepted) + len(self.quarantined)
        return len(self.quarantined) / total if total else 0.0


def validate_bars(
    frame: pd.DataFrame, *, now: datetime | None = None, universe: Collection[str] | None = None
) -> ValidationResult:
    """Split bars into accepted rows (typed, raw schema) and quarantined rows (original text + reasons).
    ``universe``: the symbols to accept (None: any)."""
    now = now or datetime.now(UTC)
    n = len(frame)
    if "source_row" not in frame.columns:
        frame = frame.assign(source_row=np.arange(n))
    reasons = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray | pd.Series, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        reasons[mask] = np.where(reasons[mask] == "", reason, reasons[mask] + "; " + reason)

    symbol = frame["symbol"].astype("string").str.strip()
    flag(symbol.isna() | (symbol == ""), "symbol: missing")
    if universe is not None:
        flag(symbol.notna() & (symbol != "") & ~symbol.isin(list(universe)), "symbol: not in the symbol universe")

    timestamp = parse_utc(frame["timestamp"])
    flag(timestamp.isna(), "timestamp: missing or unparseable")
    off_grid = timestamp.notna() & (timestamp != timestamp.dt.floor(BAR_INTERVAL))  # NaT != x is True
    flag(off_grid.to_numpy(), "timestamp: not on the hourly grid (a bar opens on the hour)")

    numbers = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in NUMERIC_COLUMNS}
    for column, values in numbers.items():
        flag(~np.isfinite(values.to_numpy()), f"{column}: missing or not a finite number")
    for column in PRICE_COLUMNS:
        flag(numbers[column].to_numpy() <= 0, f"{column}: non-positive price")
    high, low = numbers["high"].to_numpy(), numbers["low"].to_numpy()
    flag(high < low, "high < low")
    for column in ("open", "close"):
        values = numbers[column].to_numpy()
        flag((values < low) | (values > high), f"{column} outside [low, high]")
    flag(numbers["volume"].to_numpy() < 0, "volume: negative")

    bar_close = timestamp + BAR_INTERVAL
    if "available_at" in frame.columns:
        raw_available = frame["available_at"]
        available = parse_utc(raw_available)
        given = raw_available.notna() & (raw_available.astype("string").str.strip() != "")
        flag(given & available.isna(), "available_at: unparseable")
        flag((available < bar_close).fillna(False).to_numpy(), "available_at: before the bar closed")
        available = available.fillna(bar_close)
    else:
        available = bar_close

    # Among otherwise valid rows the first occurrence of a (symbol, timestamp) wins, in file order.
    valid_rows = np.flatnonzero(reasons == "")
    duplicate = np.zeros(n, dtype=bool)
    keys = pd.DataFrame({"symbol": symbol, "timestamp": timestamp}).iloc[valid_rows]
    duplicate[valid_rows] = keys.duplicated(keep="first").to_numpy()
    flag(duplicate, "duplicate (symbol, timestamp)")

    ok = reasons == ""
    sector = frame["sector"].astype("string").str.strip() if "sector" in frame.columns else None
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
        columns=list(RAW_COLUMNS),
    ).reset_index(drop=True)
    for column in ("timestamp", "available_at"):
        accepted[column] = accepted[column].astype("datetime64[us, UTC]")

    bad = ~ok
    partition = timestamp[bad].dt.strftime("%Y-%m-%d").fillna(UNPARSEABLE_PARTITION)
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
        columns=list(QUARANTINE_COLUMNS[:-1]),
    ).reset_index(drop=True)
    quarantined["quarantined_at"] = pd.Series([now] * len(quarantined), dtype="datetime64[us, UTC]")
    return ValidationResult(accepted=accepted, quarantined=quarantined)


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
