"""Bars of any frequency: daily equity bars end to end through ingestion, features and labels under
MLOPS_BAR_INTERVAL=1d; files of another frequency than the declared one refused with both intervals named; the
synthetic market at 1d; one message for bars before the first partition."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import VOLATILITY_FORECASTER
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.bars import BarClock, format_interval
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.ingest import IngestionOutcome, ingest_window
from mlops_pipelines.lib.ingestion.raw_folder import QUARANTINED_FILES_TABLE, load_window, open_index, typical_spacing
from mlops_pipelines.lib.ingestion.source_files import list_source_files
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.training.datasets import label_sql
from mlops_pipelines_tests.reference_impls import pandas_features

D = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
DAILY = BarClock(timedelta(days=1), "equities")
HOURLY = BarClock()
FIRST, NOW = D(2025, 1, 1), D(2026, 6, 1)
HEADER = "symbol,timestamp,open,high,low,close,volume,sector\n"


def weekdays(start: str, n: int) -> pd.DatetimeIndex:
    return pd.bdate_range(start, periods=n, tz="UTC")


def bars_csv(path: Path, times: pd.DatetimeIndex, symbols: tuple[str, ...], *, seed: int, date_only: bool) -> None:
    """A vendor file: a random walk per symbol at ``times`` (daily: ``2025-01-06``, the session's date)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i, symbol in enumerate(symbols):
        close = 50.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.015, len(times))))
        opened = close * np.exp(rng.normal(0, 0.003, len(times)))
        high, low = np.maximum(opened, close) * 1.004, np.minimum(opened, close) * 0.996
        for t, o, h, lo, c, v in zip(times, opened, high, low, close, rng.integers(1e5, 1e6, len(times)), strict=True):
            stamp = f"{t:%Y-%m-%d}" if date_only else f"{t:%Y-%m-%dT%H:%M:%SZ}"
            lines.append(f"{symbol},{stamp},{o:.6f},{h:.6f},{lo:.6f},{c:.6f},{v},sector{i % 2}\n")
    path.write_text(HEADER + "".join(lines))


def ingest(raw: Path, db: Path, clock: BarClock, start: datetime, end: datetime) -> IngestionOutcome:
    """One ingestion run over [start, end) of the raw folder, as the market_bars asset runs it."""
    with open_index(raw.parent / "raw_index.sqlite") as index:
        batch = load_window(
            index, list_source_files(raw), start, end, first_bar=FIRST, latest=NOW, bar_interval=clock.interval
        )
    days = [f"{d:%Y-%m-%d}" for d in pd.date_range(start, end, freq="D", inclusive="left")]
    return ingest_window(
        batch,
        lambda: warehouse.connect(db),
        start=start,
        end=end,
        partition_keys=days,
        first_bar=FIRST,
        now=NOW,
        run_id="run-1",
        bar_interval=clock.interval,
    )


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    return folder


@pytest.fixture
def daily_warehouse(raw: Path, tmp_path: Path) -> Iterator[tuple[Path, IngestionOutcome]]:
    """300 trading days (weekends skipped) of three symbols, one file each, ingested under 1d with every view
    materialized by the catalog for daily equity bars."""
    times = weekdays("2025-01-06", 300)
    for n, symbol in enumerate(("AAA", "BBB", "CCC")):
        bars_csv(raw / f"{symbol}.csv", times, (symbol,), seed=n, date_only=True)
    db = tmp_path / "warehouse.duckdb"
    outcome = ingest(raw, db, DAILY, FIRST, D(2026, 3, 1))
    catalog = load_catalog(DAILY)
    with warehouse.connect(db) as conn:
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    yield db, outcome


def test_daily_bars_flow_through_ingestion_and_features_annualized_with_252(
    daily_warehouse: tuple[Path, IngestionOutcome],
) -> None:
    db, outcome = daily_warehouse
    assert len(outcome.quarantined) == 0 and not outcome.unreadable and len(outcome.accepted) == 900
    catalog = load_catalog(DAILY)
    with warehouse.connect(db, read_only=True) as conn:
        bars = conn.execute(f"SELECT * FROM {market_bars.BARS_TABLE} ORDER BY symbol, timestamp").fetchdf()
        vol = conn.execute(f"SELECT * FROM {catalog.views['volatility'].table} ORDER BY symbol, event_ts").fetchdf()
        views = {
            name: conn.execute(f"SELECT * FROM {view.table} ORDER BY symbol, event_ts").fetchdf()
            for name, view in catalog.views.items()
        }
    # a daily bar closes, and is available, a day after it opens; its features' event time is that close
    assert (bars["available_at"] - bars["timestamp"] == pd.Timedelta(days=1)).all()
    assert (vol["event_ts"].to_numpy() == (bars["timestamp"] + pd.Timedelta(days=1)).to_numpy()).all()

    # realized volatility over 24 bars (24 trading days, weekends are no bars), annualized with 252
    for symbol, group in bars.groupby("symbol"):
        log_returns = np.log(group["close"]).diff()
        expected = log_returns.rolling(24).std() * np.sqrt(252)
        got = vol.loc[vol["symbol"] == symbol, "rvol_24b"].to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-9, equal_nan=True, err_msg=symbol)
        assert np.isfinite(got).sum() == len(group) - 24  # NULL until the window (and its first return) is full
    assert 0.1 < vol["rvol_24b"].median() < 0.5  # ~1.5 % a day is ~24 % a year, not the 140 % sqrt(8760) says

    # every view equals the independent pandas implementation for daily bars
    reference = pandas_features(
        bars,
        {n: v.availability_lag for n, v in catalog.views.items()},
        bar_interval=timedelta(days=1),
        periods_per_year=252,
    )
    for name, view in catalog.views.items():
        got, exp = views[name], reference[name].sort_values(["symbol", "event_ts"]).reset_index(drop=True)
        assert len(got) == len(exp) == 900 and (got["created_ts"] == exp["created_ts"]).all(), name
        for feature in view.features:
            if got[feature].dtype == object:
                assert (got[feature] == exp[feature]).all(), feature
                continue
            np.testing.assert_allclose(
                got[feature].astype(float), exp[feature].astype(float), rtol=1e-9, atol=1e-12, equal_nan=True
            )


def test_daily_labels_count_bars_and_annualize_with_the_calendar(
    daily_warehouse: tuple[Path, IngestionOutcome],
) -> None:
    db, _ = daily_warehouse
    with warehouse.connect(db, read_only=True) as conn:
        labels = conn.execute(label_sql(VOLATILITY_FORECASTER, clock=DAILY)).fetchdf()
        bars = conn.execute(
            f"SELECT symbol, timestamp, close FROM {market_bars.BARS_TABLE} WHERE symbol = 'AAA' ORDER BY timestamp"
        ).fetchdf()
    labels = labels[labels["symbol"] == "AAA"].reset_index(drop=True)
    horizon = VOLATILITY_FORECASTER.label.horizon_bars
    r = np.log(bars["close"]).diff()
    forward = r[::-1].rolling(horizon).std()[::-1].shift(-1) * np.sqrt(252)  # the next `horizon` returns
    expected = pd.DataFrame({"timestamp": bars["timestamp"], "label": forward}).dropna().reset_index(drop=True)
    assert len(labels) == len(expected) == len(bars) - horizon
    np.testing.assert_allclose(labels["label"], expected["label"], rtol=1e-9)
    # decided 5 minutes after the daily close; known when the last bar of the horizon closes (weekends skipped)
    assert (labels["event_timestamp"] == expected["timestamp"] + pd.Timedelta(days=1, minutes=5)).all()
    last_bar = bars["timestamp"].shift(-horizon).iloc[: len(labels)].reset_index(drop=True)
    assert (labels["label_available_at"] == last_bar + pd.Timedelta(days=1)).all()


def refused(outcome: IngestionOutcome, name: str) -> str:
    [entry] = [e for e in outcome.unreadable if Path(e.path).name == name]
    return str(entry.error)


@pytest.mark.parametrize(
    ("declared", "delivered", "detected"),
    [(DAILY, "hourly", "1h"), (HOURLY, "daily", "1d"), (BarClock(timedelta(minutes=15)), "hourly", "1h")],
)
def test_a_file_of_another_frequency_is_refused_naming_both_intervals(
    raw: Path, tmp_path: Path, declared: BarClock, delivered: str, detected: str
) -> None:
    hourly = pd.date_range("2025-03-03", periods=72, freq="h", tz="UTC")
    if delivered == "hourly":
        bars_csv(raw / "vendor.csv", hourly, ("AAA", "BBB"), seed=1, date_only=False)
    else:
        bars_csv(raw / "vendor.csv", weekdays("2025-02-03", 30), ("AAA", "BBB"), seed=1, date_only=True)
    db = tmp_path / "w.duckdb"
    outcome = ingest(raw, db, declared, FIRST, D(2025, 4, 1))
    reason = refused(outcome, "vendor.csv")
    assert f"bars {detected} apart" in reason and f"MLOPS_BAR_INTERVAL declares {declared.label} bars" in reason
    assert f"set MLOPS_BAR_INTERVAL={detected}" in reason and str(raw / "vendor.csv") in reason
    assert len(outcome.accepted) == 0  # not one of its bars is ingested
    with warehouse.connect(db, read_only=True) as conn:
        assert warehouse.scalar(conn, f"SELECT count(*) FROM {market_bars.BARS_TABLE}") == 0
        listed = conn.execute(f"SELECT path, reason FROM {QUARANTINED_FILES_TABLE}").fetchall()
    assert listed == [(str(raw / "vendor.csv"), reason)]


@pytest.mark.parametrize(("declared", "delivered"), [(DAILY, "daily"), (HOURLY, "hourly")])
def test_placebo_a_file_of_the_declared_frequency_is_ingested_whole(
    raw: Path, tmp_path: Path, declared: BarClock, delivered: str
) -> None:
    if delivered == "hourly":
        bars_csv(
            raw / "vendor.csv",
            pd.date_range("2025-03-03", periods=72, freq="h", tz="UTC"),
            ("AAA",),
            seed=1,
            date_only=False,
        )
    else:
        bars_csv(raw / "vendor.csv", weekdays("2025-02-03", 30), ("AAA",), seed=1, date_only=True)
    outcome = ingest(raw, tmp_path / "w.duckdb", declared, FIRST, D(2025, 4, 1))
    assert not outcome.unreadable and len(outcome.quarantined) == 0
    assert len(outcome.accepted) == (72 if delivered == "hourly" else 30)


def test_too_few_bars_to_tell_a_frequency_are_judged_by_the_grid(raw: Path, tmp_path: Path) -> None:
    """One bar per symbol tells no spacing: under 1d, a bar opening at 05:00 is off the daily grid."""
    (raw / "one.csv").write_text(
        HEADER + "AAA,2025-03-03T05:00:00Z,10,11,9,10.5,100,x\nBBB,2025-03-03,10,11,9,10.5,100,x\n"
    )
    outcome = ingest(raw, tmp_path / "w.duckdb", DAILY, FIRST, D(2025, 4, 1))
    assert not outcome.unreadable and outcome.accepted["symbol"].tolist() == ["BBB"]
    [reason] = outcome.quarantined["reason"].tolist()
    assert reason.startswith("timestamp: not on the 1d grid (MLOPS_BAR_INTERVAL=1d")


def test_the_synthetic_market_at_1d() -> None:
    config = SyntheticMarketConfig(n_symbols=4, bar_interval=timedelta(days=1), regime_shift_at=D(2026, 2, 20))
    month = generate_bars(config, D(2026, 1, 1), D(2026, 3, 1))
    assert len(month) == 4 * 59 and set(month["timestamp"].dt.strftime("%H:%M")) == {"00:00"}
    assert (month["available_at"] - month["timestamp"] == pd.Timedelta(days=1, seconds=30)).all()
    # a day generated alone is that day of the month: partitions can be materialized independently
    day = generate_bars(config, D(2026, 2, 10), D(2026, 2, 11))
    pd.testing.assert_frame_equal(
        day, month[month["timestamp"] == pd.Timestamp("2026-02-10", tz="UTC")].reset_index(drop=True)
    )
    result = validate_bars(month, now=NOW, bar_interval=timedelta(days=1))
    assert len(result.quarantined) == 0
    hourly = validate_bars(month, now=NOW)  # all on the hourly grid: only the spacing tells (raw_folder.refusal)
    assert len(hourly.quarantined) == 0
    # the per-hour parameters scale with the bar: a daily return's volatility is about sqrt(24) hourly ones
    r = np.log(month.pivot(index="timestamp", columns="symbol", values="close")).diff()
    before = r[r.index < pd.Timestamp("2026-02-20", tz="UTC")].std().median()
    hourly_bars = generate_bars(SyntheticMarketConfig(n_symbols=4, regime_shift_at=None), D(2026, 1, 1), D(2026, 2, 20))
    hourly_r = np.log(hourly_bars.pivot(index="timestamp", columns="symbol", values="close")).diff().std().median()
    assert 2.5 < before / hourly_r < 8  # sqrt(24) = 4.9; news continuation and regimes move it


def test_bars_before_the_first_partition_give_one_message_saying_what_to_set(raw: Path, tmp_path: Path) -> None:
    """A vendor's history from 2019 under MLOPS_MARKET_START=2026-01-01: the first partition's run quarantines the
    bars (never dropped) and says once when they start and what to set."""
    for n, symbol in enumerate(("AAA", "BBB", "CCC")):
        bars_csv(raw / f"{symbol}.csv", weekdays("2019-01-02", 336), (symbol,), seed=n, date_only=True)
    first = D(2026, 1, 1)
    with open_index(None) as index:
        batch = load_window(
            index,
            list_source_files(raw),
            first,
            first + timedelta(days=1),
            first_bar=first,
            latest=NOW,
            bar_interval=DAILY.interval,
        )
    outcome = ingest_window(
        batch,
        lambda: warehouse.connect(tmp_path / "w.duckdb"),
        start=first,
        end=first + timedelta(days=1),
        partition_keys=["2026-01-01"],
        first_bar=first,
        now=NOW,
        run_id="r",
        bar_interval=DAILY.interval,
    )
    assert len(outcome.quarantined) == 3 * 336 and len(outcome.accepted) == 0
    assert outcome.before_first_partition == (
        f"bars start 2019-01-02 ({raw / 'AAA.csv'} and 2 more files), the first partition is 2026-01-01: "
        "set MLOPS_MARKET_START=2019-01-02 to ingest them; until then the 1,008 bars before 2026-01-01 are "
        "quarantined under partition key __outside_partitions__, not ingested"
    )


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # stray bars decades away (quarantined by validation) among hourly ones: a median would say "years"
        (["1900-01-01", "2026-01-03 00:00", "2026-01-03 01:00", "2026-01-03 02:00", "2026-11-30", "2030-06-01"], "1h"),
        (list(weekdays("2025-01-06", 20).strftime("%Y-%m-%d")), "1d"),  # weekends are the rarer spacing
        ([f"2025-01-0{d} {h:02d}:30" for d in (6, 7) for h in range(14, 21)], "1h"),  # a session a day, 7 bars
        (["2025-01-06", "2025-01-07"], None),  # too few spacings to tell
    ],
)
def test_a_files_frequency_is_its_most_common_spacing(times: list[str], expected: str | None) -> None:
    timestamp = pd.Series(pd.to_datetime(times, utc=True, format="mixed"))
    spacing = typical_spacing(pd.Series(["AAA"] * len(times)), timestamp)
    assert (format_interval(spacing) if spacing is not None else None) == expected
