"""The bar clock: intervals, calendars, periods per year, the settings that declare them, and the catalog built
for them (hash and lock)."""

from datetime import timedelta

import pytest

from mlops_pipelines.catalog.feature_views import FEATURE_VIEWS, load_catalog
from mlops_pipelines.lib.core import metrics
from mlops_pipelines.lib.core.bars import BarClock, format_interval, parse_interval
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, diff_lock
from mlops_pipelines.settings import Settings

H, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("interval", "calendar", "expected"),
    [
        (H, "24x7", 8760),  # 24 x 365
        (DAY, "24x7", 365),
        (timedelta(minutes=15), "24x7", 35040),
        (DAY, "equities", 252),
        (H, "equities", 1638),  # 252 x 6.5
        (timedelta(minutes=30), "equities", 3276),
    ],
)
def test_periods_per_year_follow_the_interval_and_the_calendar(
    interval: timedelta, calendar: str, expected: float
) -> None:
    assert metrics.periods_per_year(interval, calendar) == expected
    assert BarClock(interval, calendar).periods_per_year == expected


def test_the_default_is_hourly_around_the_clock() -> None:
    assert BarClock().periods_per_year == 8760 and BarClock().label == "1h"


@pytest.mark.parametrize("text", ["1min", "5min", "15min", "30min", "1h", "2h", "4h", "1d", " 60MIN "])
def test_intervals_that_divide_a_day_are_read_and_spelled_back(text: str) -> None:
    interval = parse_interval(text)
    assert parse_interval(format_interval(interval)) == interval


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("7min", "do not divide a day"),
        ("2d", "longer than a day"),
        ("1w", "a whole number and a unit"),
        ("1m", "a whole number and a unit"),  # minutes or months? neither: min
        ("0h", "a whole number and a unit"),
        ("hourly", "a whole number and a unit"),
    ],
)
def test_other_intervals_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_interval(text)


def test_unknown_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown market calendar 'lunar'; known: 24x7, equities"):
        BarClock(DAY, "lunar")


def test_settings_declare_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLOPS_BAR_INTERVAL", "MLOPS_MARKET_CALENDAR", "MLOPS_MARKET_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().bar_clock == BarClock()
    monkeypatch.setenv("MLOPS_MARKET_SOURCE", "folder")
    monkeypatch.setenv("MLOPS_BAR_INTERVAL", "1d")
    monkeypatch.setenv("MLOPS_MARKET_CALENDAR", "Equities")
    assert Settings.from_env().bar_clock == BarClock(DAY, "equities")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"MLOPS_BAR_INTERVAL": "2d"}, "MLOPS_BAR_INTERVAL: bars of '2d' are longer than a day"),
        ({"MLOPS_BAR_INTERVAL": "100min"}, "MLOPS_BAR_INTERVAL: bars of '100min' do not divide a day"),
        ({"MLOPS_MARKET_CALENDAR": "lunar"}, "MLOPS_MARKET_CALENDAR: unknown market calendar 'lunar'"),
        (
            {"MLOPS_MARKET_CALENDAR": "equities", "MLOPS_MARKET_SOURCE": "synthetic"},
            "MLOPS_MARKET_CALENDAR=equities needs your own bars",
        ),
    ],
)
def test_a_bad_clock_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("MLOPS_MARKET_SOURCE", "folder")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_the_catalog_is_built_for_a_clock_which_the_hash_and_the_lock_record() -> None:
    hourly, daily = load_catalog(BarClock()), load_catalog(BarClock(DAY, "equities"))
    # the same views, counted in bars: a model trained on hourly features is refused on daily ones (hash)
    assert hourly.graph_hash() != daily.graph_hash()
    assert daily.views["returns"].ttl == 3 * DAY and hourly.views["returns"].ttl == 3 * H  # TTLs in bars
    assert "sqrt(252)" in daily.render_body("volatility") and "sqrt(8760)" in hourly.render_body("volatility")
    assert '"timestamp" + INTERVAL 24 HOUR AS event_ts' in daily.render_body("returns")
    assert "{{" not in daily.render_body("cross_sectional")
    # the views' contracts do not depend on the clock; the lock records it once, and diff names it
    assert {n: v.contract(hourly) for n, v in hourly.views.items()} == {
        n: v.contract(daily) for n, v in daily.views.items()
    }
    [change] = [c for c in diff_lock(hourly.lock(), daily.lock()) if c.kind != "unchanged"]
    assert change.breaking and change.view == "bar clock"
    assert "locked for 1h bars on the 24x7 calendar, this checkout declares 1d bars on the equities calendar" in (
        change.describe()
    )
    # a lock from before the clock was declared was made for hourly bars around the clock
    legacy = {k: v for k, v in hourly.lock().items() if k != "bars"}
    assert all(c.kind == "unchanged" for c in diff_lock(legacy, hourly.lock()))
    assert FeatureCatalog.from_views(FEATURE_VIEWS).graph_hash() == hourly.graph_hash()  # the default clock
