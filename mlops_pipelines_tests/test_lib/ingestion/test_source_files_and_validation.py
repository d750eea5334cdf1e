"""The synthetic market, the file reader and row-level validation."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.ingestion.market_bars import UNPARSEABLE_PARTITION, reason_counts
from mlops_pipelines.lib.ingestion.source_files import SourceFileError, read_source_file
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars

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
        ({"timestamp": "2026-01-01T01:30:00Z"}, "timestamp: not on the 1h grid"),
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
    assert "1h grid" not in bad["reason"] or "1h grid" in reason  # an unparseable time is not off-grid
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
    assert result.quarantined["reason"].tolist() == ["duplicate (symbol, timestamp) [kept: f.csv:2]"]
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


HEADER = "symbol,timestamp,open,high,low,close,volume,sector\n"
ROW = "AAA,2026-01-01T{hour:02d}:00:00Z,10,11,9,10.5,100,tech\n"


def _corrupt_parquet(path: Path) -> None:
    pd.DataFrame([GOOD]).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])  # truncated upload: no footer


def _duplicate_parquet_columns(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [*GOOD, "Close"]
    pq.write_table(pa.table([pa.array([v]) for v in [*GOOD.values(), "1"]], names=names), path)


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("empty.csv", lambda p: p.write_bytes(b""), r"empty\.csv: empty file \(0 bytes\)"),
        (
            "image.csv",
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\rIHDR\xff"),
            r"image\.csv: line 1: not UTF-8",
        ),
        ("late.csv", lambda p: p.write_bytes(HEADER.encode() + b"AAA,\xff\n"), r"late\.csv: line 2: not UTF-8"),
        ("corrupt.parquet", _corrupt_parquet, r"corrupt\.parquet: not a readable Parquet file"),
        (
            "twice.csv",
            lambda p: p.write_text("symbol,timestamp,open,high,low,close,Close,volume\n"),
            r"twice\.csv: line 1: duplicate column 'close' \(columns 6 and 7\)",
        ),
        ("twice.parquet", _duplicate_parquet_columns, r"twice\.parquet: line 1: duplicate column 'close'"),
        ("blank.csv", lambda p: p.write_text("\n" + ROW.format(hour=0)), r"blank\.csv: line 1: no header line"),
    ],
)
def test_a_file_that_cannot_be_read_raises_naming_it(tmp_path: Path, name: str, write, message: str) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(SourceFileError, match=message):
        read_source_file(path)


def test_a_line_with_an_extra_field_is_rejected_alone_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + ROW.format(hour=0) + ROW.format(hour=1).replace("tech", "tech,extra") + ROW.format(hour=2))
    frame = read_source_file(path)
    assert frame["source_row"].tolist() == [2, 3, 4]
    result = validate_bars(frame)
    assert len(result.accepted) == 2
    [bad] = result.quarantined.to_dict("records")
    assert bad["source_row"] == 3 and bad["source_file"] == str(path)
    assert bad["reason"] == "line: more fields than the header [9 fields, the header has 8]"


def test_line_numbers_are_exact_around_blank_lines_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        HEADER
        + ROW.format(hour=0)
        + "\n"  # line 3: blank, not a bar
        + ROW.format(hour=1).replace("tech", '"te\nch"')  # lines 4-5: one record
        + ",,,,,,,\n"  # line 6: separators only, not a bar
        + ROW.format(hour=2).replace("10.5", "")  # line 7
    )
    frame = read_source_file(path)
    assert frame["source_row"].tolist() == [2, 4, 7]
    assert validate_bars(frame).quarantined[["source_row", "reason"]].values.tolist() == [
        [4, "sector: contains control characters"],  # the line break inside the quotes
        [7, "close: missing or not a finite number"],
    ]


def test_a_nul_byte_in_a_symbol_is_quarantined_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        HEADER + ROW.format(hour=0).replace("AAA", "A\x00A") + ROW.format(hour=1).replace("tech", "te\x01ch")
    )
    result = validate_bars(read_source_file(path))
    assert result.accepted.empty
    assert result.quarantined["symbol"].tolist() == ["A\x00A", "AAA"]
    assert result.quarantined["reason"].tolist() == [
        "symbol: contains control characters",
        "sector: contains control characters",
    ]


NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_rows_outside_the_partitions_are_quarantined_under_a_key_of_their_own() -> None:
    rows = [
        {**GOOD, "timestamp": "2026-03-01T00:00:00Z"},  # accepted
        {**GOOD, "timestamp": "1900-01-01T00:00:00Z"},
        {**GOOD, "timestamp": "2030-06-01T00:00:00Z"},
        {**GOOD, "timestamp": "2026-03-11T12:00:00Z"},  # tomorrow
        {**GOOD, "timestamp": "2026-03-10T12:00:00Z", "symbol": "BBB"},  # now: within the skew, accepted
        {**GOOD, "timestamp": "2026-03-01T01:00:00Z", "available_at": "2031-01-01T00:00:00Z"},
        {**GOOD, "timestamp": "2026-03-10T12:00:00Z", "available_at": "2026-03-10T13:04:00Z"},  # within the skew
    ]
    frame = pd.DataFrame(rows).assign(source_file="f.csv", source_row=range(2, 9))
    result = validate_bars(frame, now=NOW, first_bar=D(2026, 1, 1), max_clock_skew=timedelta(hours=1, minutes=5))
    assert result.accepted["symbol"].tolist() == ["AAA", "BBB", "AAA"]
    assert len(result.accepted) + len(result.quarantined) == len(rows)
    bad = result.quarantined[["source_row", "partition_key", "reason"]].values.tolist()
    assert bad == [
        [3, "__outside_partitions__", "timestamp: before the first partition (2026-01-01)"],
        [4, "__outside_partitions__", "timestamp: in the future beyond the allowed clock skew (3900 s)"],
        [5, "__outside_partitions__", "timestamp: in the future beyond the allowed clock skew (3900 s)"],
        [7, "2026-03-01", "available_at: in the future beyond the allowed clock skew (3900 s)"],
    ]
    # the default skew is five minutes; no lower bound without a first partition
    default = validate_bars(frame, now=NOW)
    assert "timestamp: before" not in " ".join(default.quarantined["reason"])
    assert "(300 s)" in default.quarantined["reason"].iloc[-1] and len(default.quarantined) == 4


def test_duplicates_across_files_the_latest_arrival_wins() -> None:
    """Not the path order: the latest available_at, then the most recently modified file."""
    old = {**GOOD, "close": "10.1", "source_file": "b_vendor.csv", "source_row": 2, "source_mtime_ns": 100}
    fix = {**GOOD, "close": "10.2", "source_file": "a_fix.csv", "source_row": 5, "source_mtime_ns": 200}
    result = validate_bars(pd.DataFrame([old, fix]).assign(available_at=None))
    assert result.accepted["close"].tolist() == [10.2] and result.accepted["source_file"].tolist() == ["a_fix.csv"]
    assert result.quarantined[["source_file", "reason"]].values.tolist() == [
        ["b_vendor.csv", "duplicate (symbol, timestamp) [kept: a_fix.csv:5]"]
    ]
    # a later available_at beats a later file
    late = {**old, "available_at": "2026-01-01T03:00:00Z"}
    result = validate_bars(pd.DataFrame([late, {**fix, "available_at": "2026-01-01T01:00:00Z"}]))
    assert result.accepted["source_file"].tolist() == ["b_vendor.csv"]
    # same file, same arrival: the first line
    same = validate_bars(pd.DataFrame([{**fix, "source_row": 9}, fix]).assign(available_at=None))
    assert same.quarantined["reason"].tolist() == ["duplicate (symbol, timestamp) [kept: a_fix.csv:5]"]


def test_reason_counts_group_details_away() -> None:
    counts = reason_counts(["duplicate (symbol, timestamp) [kept: a.csv:2]; volume: negative", "volume: negative"])
    assert counts == {"duplicate (symbol, timestamp)": 1, "volume: negative": 2}


@pytest.mark.parametrize("malformed", [False, True])  # the C parser; the exact path a malformed line sends it to
def test_lines_without_any_value_are_no_bars_and_numbers_stay_exact(tmp_path: Path, malformed: bool) -> None:
    path = tmp_path / "bars.csv"
    extra = ROW.format(hour=2).replace("tech", "tech,x") if malformed else ROW.format(hour=2)
    path.write_text(HEADER + ROW.format(hour=0) + "\n" + ",,,,,,,\n" + ROW.format(hour=1) + extra + "\n")
    frame = read_source_file(path)
    assert frame["source_row"].tolist() == [2, 5, 6]
    assert frame["line_error"].notna().tolist() == [False, False, malformed]
