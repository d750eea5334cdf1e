"""The daily rebuild of a reference profile is incremental: the next window's profile is folded from the cached one
(its unchanged hours kept, the expired ones dropped, only new or changed hours read) and equals the profile built
from scratch, except that it keeps the cached profile's principal plane while the window that plane was fitted on
covers at least half of its own (its reference errors then equal that plane's errors over every row of the new
window); a changed hour or a window with nothing in common is read again."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.monitoring import drift
from mlops_pipelines.lib.monitoring.calibration import HourlyAggregates
from mlops_pipelines.lib.monitoring.reference_profiles import build_view_profile, hour_fingerprints, view_profile

DAY = datetime(2026, 1, 8, tzinfo=UTC)
REFERENCE = timedelta(days=4)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlops_pipelines.catalog.feature_views import load_catalog

    catalog = load_catalog()
    path = tmp_path_factory.mktemp("profiles") / "w.duckdb"
    config = SyntheticMarketConfig(n_symbols=6, regime_shift_at=None)
    bars = validate_bars(generate_bars(config, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC)))
    with warehouse.connect(path) as conn:
        conn.register("_bars", bars.accepted)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    return path


def scratch(
    conn, view, start: datetime, end: datetime, plane_of: drift.ReferenceProfile | None = None
) -> drift.ReferenceProfile:
    """The profile built from the warehouse alone; with ``plane_of``, its principal plane replaced by that
    profile's, with the errors of every row of the window computed from scratch under it."""
    built = build_view_profile(conn, view, start, end, hour_fingerprints(conn, view, start, end), 0.65)
    if plane_of is None or view.name not in plane_of.reconstruction:
        return built
    plane = plane_of.reconstruction[view.name]
    selected = ", ".join([*plane.features, f"epoch({view.event_time})"])
    raw = conn.execute(
        f"SELECT {selected} FROM {view.table} WHERE {view.event_time} >= ? AND {view.event_time} < ?", [start, end]
    ).fetchdf()
    columns = {f: raw[f].to_numpy(dtype=float) for f in plane.features}
    hours = (raw.iloc[:, -1].to_numpy(dtype=float) // 3600).astype(np.int64)
    first, slots = int(start.timestamp() // 3600), int((end - start).total_seconds() // 3600)
    present = np.isfinite(np.column_stack(list(columns.values()))).any(axis=1)
    errors = plane.errors(columns)
    hourly = HourlyAggregates.of(hours[present], errors, np.zeros(len(errors), dtype=np.int64), 1, first, slots)
    return replace(built, reconstruction={view.name: replace(plane, hourly=hourly)})


def assert_same_profile(folded: drift.ReferenceProfile, built: drift.ReferenceProfile) -> None:
    """Equal, to floating-point summation order (the hourly sums are added in another order)."""
    assert folded.rows == built.rows
    assert folded.numeric.keys() == built.numeric.keys()
    for name, values in built.numeric.items():
        np.testing.assert_array_equal(folded.numeric[name], values)
    assert folded.categorical.keys() == built.categorical.keys()
    for name, counts in built.categorical.items():
        pd.testing.assert_series_equal(folded.categorical[name], counts)
    assert folded.hourly.keys() == built.hourly.keys()
    for name, agg in built.hourly.items():
        other = folded.hourly[name]
        assert other.start_hour == agg.start_hour
        np.testing.assert_array_equal(other.count, agg.count)
        np.testing.assert_array_equal(other.bins, agg.bins)
        np.testing.assert_allclose([other.center], [agg.center], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(other.total, agg.total, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(other.squares, agg.squares, rtol=1e-9, atol=1e-12)
    assert folded.reconstruction.keys() == built.reconstruction.keys()
    for name, plane in built.reconstruction.items():
        other = folded.reconstruction[name]
        assert other.features == plane.features
        for got, want in ((other.mean, plane.mean), (other.scale, plane.scale), (other.components, plane.components)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert other.fitted_on == plane.fitted_on
        np.testing.assert_array_equal(other.hourly.count, plane.hourly.count)
        np.testing.assert_allclose([other.hourly.center], [plane.hourly.center], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(other.hourly.total, plane.hourly.total, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(other.hourly.squares, plane.hourly.squares, rtol=1e-9, atol=1e-9)


def reused_hours(profile: drift.ReferenceProfile) -> int:
    return int(profile.provenance["reused_slots"].sum())


def test_the_next_windows_profile_is_folded_from_the_cached_one_and_equals_one_built_from_scratch(
    market: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    cache = tmp_path / "profiles"
    with warehouse.connect(market, read_only=True) as conn:
        for view in catalog.views.values():
            today = view_profile(conn, view, DAY - REFERENCE, DAY, cache)
            assert reused_hours(today) == 0  # nothing cached yet: built from scratch
            tomorrow = view_profile(conn, view, DAY + timedelta(days=1) - REFERENCE, DAY + timedelta(days=1), cache)
            assert reused_hours(today) == 0 and reused_hours(tomorrow) == 3 * 24, view.name  # 3 of 4 days kept
            # today's plane is kept (fitted on 3 of tomorrow's 4 days): only the new day's errors are computed
            assert_same_profile(
                tomorrow, scratch(conn, view, DAY + timedelta(days=1) - REFERENCE, DAY + timedelta(days=1), today)
            )
            # and the profile read back from the cache is the one folded
            assert_same_profile(
                view_profile(conn, view, DAY + timedelta(days=1) - REFERENCE, DAY + timedelta(days=1), cache), tomorrow
            )


def test_a_changed_hour_is_read_again_and_a_window_with_nothing_in_common_is_built_from_scratch(
    market: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    path, cache = tmp_path / "w.duckdb", tmp_path / "profiles"
    path.write_bytes(market.read_bytes())  # this test rewrites a view: a copy
    view = catalog.views["returns"]
    with warehouse.connect(path) as conn:
        today = view_profile(conn, view, DAY - REFERENCE, DAY, cache)
        changed = DAY - timedelta(days=2) + timedelta(hours=5)  # an hour both windows hold, re-materialized
        conn.execute(
            f"UPDATE {view.table} SET ret_1b = ret_1b * 2, ret_4b = NULL WHERE event_ts >= ? AND event_ts < ?",
            [changed, changed + timedelta(hours=1)],
        )
        start, end = DAY + timedelta(days=1) - REFERENCE, DAY + timedelta(days=1)
        tomorrow = view_profile(conn, view, start, end, cache)
        assert reused_hours(tomorrow) == 3 * 24 - 1  # the changed hour is not taken from the cache
        assert_same_profile(tomorrow, scratch(conn, view, start, end, today))
        later = view_profile(
            conn, view, DAY + timedelta(days=3), DAY + timedelta(days=3) + REFERENCE - timedelta(days=1), cache
        )
        assert reused_hours(later) == 0  # no hour in common with any cached window
        assert_same_profile(
            later, scratch(conn, view, DAY + timedelta(days=3), DAY + timedelta(days=3) + REFERENCE - timedelta(days=1))
        )


def test_the_plane_is_kept_while_its_window_covers_half_of_the_reference_and_then_refitted(
    market: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    """Day after day, each profile folded from the previous one: the first window's plane is kept while it was fitted
    on at least half of the window's hours (1 and 2 days on), then refitted on the window's rows (3 days on: fitted on
    1 of its 4 days), and that profile equals one built from scratch, plane included."""
    cache, view = tmp_path / "profiles", catalog.views["volatility"]
    with warehouse.connect(market, read_only=True) as conn:
        first = view_profile(conn, view, DAY - REFERENCE, DAY, cache)
        for days in (1, 2, 3):
            start, end = DAY + timedelta(days=days) - REFERENCE, DAY + timedelta(days=days)
            folded = view_profile(conn, view, start, end, cache)
            assert reused_hours(folded) == 3 * 24, days
            kept = days < 3
            assert_same_profile(folded, scratch(conn, view, start, end, first if kept else None))
            plane, fitted = folded.reconstruction[view.name], first.reconstruction[view.name]
            assert (plane.fitted_on == fitted.fitted_on) is kept, days
            assert plane.fitted_on[1] - plane.fitted_on[0] == REFERENCE / timedelta(hours=1)
