"""The synthetic market, the file reader and row-level validation."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.market_data import (
    SourceFileError,
    SyntheticMarketConfig,
    generate_bars,
    read_source_file,
)
from mlops_pipelines.lib.validation import UNPARSEABLE_PARTITION, validate_bars

D = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731


def test_synthetic_market_is_deterministic_and_window_invariant() -> None:
    config = SyntheticMarketConfig(n_symbols=5, bad_row_rate=0.01)
    day = generate_bars(config, D(2026, 1, 5), D(2026, 1, 6))
    month = generate_bars(config, D(2026, 1, 1), D(2026, 2, 1))
    same_day = month[(month["timestamp"] >= "2026-01-05") & (month["timestamp"] < "2026-01-06")]
    pd.testing.assert_frame_equal(day, same_day.reset_index(drop=True))
    assert len(day) == 5 * 24
    assert str(day["timestamp"].dtype) == "datetime64[us, UTC]"  # microseconds: DuckDB ASOF-safe
    assert not generate_bars(SyntheticMarketConfig(n_symbols=5, seed=8), D(2026, 1, 5), D(2026, 1, 6)).equals(day)


def test_regime_shift_raises_volatility_and_volume() -> None:
    config = SyntheticMarketConfig(n_symbols=20, regime_shift_at=D(2026, 2, 1))
    bars = generate_bars(config, D(2026, 1, 1), D(2026, 3, 1)).sort_values(["symbol", "timestamp"])
    bars["r"] = np.log(bars["close"]).groupby(bars["symbol"]).diff()
    after = bars["timestamp"] >= "2026-02-01"
    assert bars.loc[after, "r"].std() > 1.8 * bars.loc[~after, "r"].std()
    assert bars.loc[after, "volume"].median() > 1.4 * bars.loc[~after, "volume"].median()


def test_synthetic_bars_are_valid_ohlc() -> None:
    bars = generate_bars(SyntheticMarketConfig(n_symbols=8), D(2026, 1, 1), D(2026, 1, 15))
    result = validate_bars(bars)
    assert len(result.quarantined) == 0 and len(result.accepted) == len(bars)


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("symbol,timestamp,open,high,low,volume\nAAA,2026-01-01T00:00:00Z,1,2,0.5,10\n")
    with pytest.raises(SourceFileError, match=r"bars\.csv.*missing required column 'close'"):
        read_source_file(path)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "bars.json"
    path.write_text("{}")
    with pytest.raises(SourceFileError, match="bars.json.*unsupported"):
        read_source_file(path)


GOOD = {
    "symbol": "AAA",
    "timestamp": "2026-01-01T00:00:00Z",
    "open": "10",
    "high": "11",
    "low": "9",
    "close": "10.5",
    "volume": "100",
}


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"close": ""}, "close: missing or not a finite number"),
        ({"close": "NaN"}, "close: missing or not a finite number"),
        ({"open": "abc"}, "open: missing or not a finite number"),
        ({"low": "-1"}, "low: non-positive price"),
        ({"open": "0"}, "open: non-positive price"),
        ({"high": "8"}, "high < low"),
        ({"open": "12"}, "open outside [low, high]"),
        ({"close": "8.5"}, "close outside [low, high]"),
        ({"volume": "-5"}, "volume: negative"),
        ({"timestamp": "yesterday"}, "timestamp: missing or unparseable"),
        ({"timestamp": "2026-01-01T01:30:00Z"}, "timestamp: not on the hourly grid"),
        ({"symbol": ""}, "symbol: missing"),
        ({"available_at": "2026-01-01T00:30:00Z"}, "available_at: before the bar closed"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason(override: dict[str, str], reason: str) -> None:
    rows = [GOOD, {**GOOD, "timestamp": "2026-01-01T01:00:00Z", **override}]
    frame = pd.DataFrame(rows).assign(source_file="f.csv", source_row=[2, 3])
    if "available_at" not in frame:
        frame["available_at"] = None
    result = validate_bars(frame)
    assert len(result.accepted) == 1 and len(result.quarantined) == 1
    bad = result.quarantined.iloc[0]
    assert reason in bad["reason"]
    assert "hourly grid" not in bad["reason"] or "hourly grid" in reason  # an unparseable time is not off-grid
    assert bad["source_file"] == "f.csv" and bad["source_row"] == 3
    expected_partition = UNPARSEABLE_PARTITION if "unparseable" in reason else "2026-01-01"
    assert bad["partition_key"] == expected_partition


def test_symbols_outside_the_universe_are_quarantined() -> None:
    rows = [GOOD, {**GOOD, "symbol": "ZZZ"}, {**GOOD, "symbol": ""}]
    frame = pd.DataFrame(rows).assign(source_file="f.csv", source_row=[2, 3, 4], available_at=None)
    result = validate_bars(frame, universe={GOOD["symbol"]})
    assert result.accepted["symbol"].tolist() == [GOOD["symbol"]]
    assert result.quarantined["reason"].tolist() == ["symbol: not in the symbol universe", "symbol: missing"]
    assert len(validate_bars(frame.head(2)).accepted) == 2  # no universe: any symbol


def test_duplicates_keep_the_first_and_nothing_is_dropped() -> None:
    rows = [GOOD, {**GOOD, "close": "10.7"}, {**GOOD, "timestamp": "2026-01-01T01:00:00Z"}]
    frame = pd.DataFrame(rows).assign(source_file="f.csv", source_row=[2, 3, 4])
    result = validate_bars(frame)
    assert len(result.accepted) + len(result.quarantined) == len(frame)
    assert result.accepted["close"].tolist() == [10.5, 10.5]
    assert result.quarantined["reason"].tolist() == ["duplicate (symbol, timestamp)"]
    assert result.quarantined["close"].tolist() == ["10.7"]  # kept as it arrived


def test_several_reasons_are_all_reported() -> None:
    frame = pd.DataFrame([{**GOOD, "high": "8", "volume": "-1"}]).assign(source_file="f.csv")
    reason = validate_bars(frame).quarantined.iloc[0]["reason"]
    assert "high < low" in reason and "volume: negative" in reason


def test_timestamps_with_offsets_convert_to_utc_and_naive_ones_are_utc() -> None:
    frame = pd.DataFrame(
        [
            {**GOOD, "timestamp": "2026-01-01T02:00:00+02:00"},
            {**GOOD, "symbol": "BBB", "timestamp": "2026-01-01 00:00:00"},
        ]
    ).assign(source_file="f.csv")
    accepted = validate_bars(frame).accepted
    assert accepted["timestamp"].tolist() == [pd.Timestamp("2026-01-01", tz="UTC")] * 2
    assert accepted["available_at"].tolist() == [pd.Timestamp("2026-01-01 01:00", tz="UTC")] * 2
    assert accepted["sector"].tolist() == ["unknown", "unknown"]


def test_csv_round_trip_reports_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "symbol,timestamp,open,high,low,close,volume,sector\n"
        "AAA,2026-01-01T00:00:00Z,10,11,9,10.5,100,tech\n"
        "AAA,2026-01-01T01:00:00Z,10,11,9,,100,tech\n"
    )
    result = validate_bars(read_source_file(path))
    assert result.accepted["sector"].tolist() == ["tech"]
    assert result.quarantined["source_row"].tolist() == [3]  # the line in the file
    assert result.quarantined["source_file"].tolist() == [str(path)]
