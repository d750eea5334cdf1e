"""The raw bar tables' owner: what it writes and what the other stages read through it."""

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_reads_before_and_after_the_first_bars(tmp_path: Path) -> None:
    bars = validate_bars(generate_bars(SyntheticMarketConfig(n_symbols=3), T0, datetime(2026, 1, 3, tzinfo=UTC)))
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        assert market_bars.last_bar_time(conn) is None and market_bars.quarantine_reasons(conn) == []
        market_bars.replace_all(conn, bars.accepted)
        assert warehouse.table_schema(conn, market_bars.BARS_TABLE) == {
            name: sql_type.removesuffix(" NOT NULL") for name, sql_type in market_bars.BAR_COLUMNS.items()
        }
        last = market_bars.last_bar_time(conn)
        window = market_bars.closes(conn, datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, 2, tzinfo=UTC))
        duplicates, total = market_bars.duplicate_bars(conn)
    assert pd.Timestamp(last) == bars.accepted["timestamp"].max()
    assert list(window.columns) == ["symbol", "timestamp", "close"] and len(window) == 2 * 3
    assert window["timestamp"].is_monotonic_increasing
    assert (duplicates, total) == (0, len(bars.accepted))


def test_quarantine_reasons_most_frequent_first(tmp_path: Path) -> None:
    raw = generate_bars(SyntheticMarketConfig(n_symbols=4, bad_row_rate=0.2), T0, datetime(2026, 1, 3, tzinfo=UTC))
    result = validate_bars(raw)
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        market_bars.create_tables(conn)
        with warehouse.transaction(conn):
            market_bars.replace_quarantined(conn, result.quarantined, partition_keys=["2026-01-01"], files_read=[])
        reasons = market_bars.quarantine_reasons(conn, limit=2)
    expected = result.quarantined["reason"].value_counts()
    assert reasons == [(str(r), int(n)) for r, n in expected.head(2).items()]


def test_empty_bars_have_the_table_dtypes() -> None:
    empty = market_bars.empty_bars()
    assert list(empty.columns) == list(market_bars.BAR_COLUMNS) and empty.empty
    assert str(empty["timestamp"].dtype) == "datetime64[us, UTC]" and empty["close"].dtype == float
