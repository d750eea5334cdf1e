"""Materialized views against an independent pandas implementation; registry, versions, online snapshot."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.feature_views import FEATURE_VIEWS, RETURNS
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView
from mlops_pipelines.lib.features.point_in_time import get_historical_features
from mlops_pipelines_tests.reference_impls import pandas_features


def with_revised_bars(bars: pd.DataFrame, share: float, seed: int = 7) -> pd.DataFrame:
    """Some bars arrive late, as a revision does (up to 10 days after their close): created times must follow."""
    rng = np.random.default_rng(seed)
    late = rng.random(len(bars)) < share
    delay = pd.to_timedelta(rng.integers(1, 240, len(bars)), unit="h")
    return bars.assign(available_at=bars["available_at"].where(~late, bars["available_at"] + delay))


@pytest.mark.parametrize("revised_share", [0.0, 0.02])
def test_views_equal_the_pandas_reference(
    small_bars: pd.DataFrame, catalog: FeatureCatalog, tmp_path: Path, revised_share: float
) -> None:
    bars = with_revised_bars(small_bars, revised_share)
    expected = pandas_features(bars, {n: v.availability_lag for n, v in catalog.views.items()})
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        conn.register("_bars", bars)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
        for name, view in catalog.views.items():
            got = conn.execute(f"SELECT * FROM {view.table} ORDER BY symbol, event_ts").fetchdf()
            exp = expected[name].sort_values(["symbol", "event_ts"]).reset_index(drop=True)
            assert len(got) == len(exp) == len(small_bars)
            assert (got["created_ts"] == exp["created_ts"]).all(), name
            for feature in view.features:
                if got[feature].dtype == object:
                    assert (got[feature] == exp[feature]).all(), feature
                    continue
                np.testing.assert_allclose(
                    got[feature].astype(float),
                    exp[feature].astype(float),
                    rtol=1e-9,
                    atol=1e-12,
                    equal_nan=True,
                    err_msg=f"{name}.{feature}",
                )
                assert got[feature].notna().mean() >= 0.5, f"{name}.{feature} is mostly NULL"


def test_rolling_features_are_null_until_the_window_is_full(feature_warehouse: Path) -> None:
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        first = conn.execute(
            "SELECT rvol_24b FROM features.volatility__v3 WHERE symbol = 'SYM0000' ORDER BY event_ts LIMIT 26"
        ).fetchdf()["rvol_24b"]
    assert first.iloc[:24].isna().all() and first.iloc[24:].notna().all()


def test_declared_schema_check(feature_warehouse: Path, catalog: FeatureCatalog) -> None:
    with warehouse.connect(feature_warehouse) as conn:
        for view in catalog.views.values():
            assert feature_store.check_view_schema(conn, view) == []
        conn.execute("ALTER TABLE features.returns__v3 DROP COLUMN ret_4b")
        assert feature_store.check_view_schema(conn, catalog.views["returns"]) == ["missing column 'ret_4b' (DOUBLE)"]


def test_sql_that_breaks_the_declared_schema_never_replaces_the_table(
    feature_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "w.duckdb"
    shutil.copy(feature_warehouse, path)
    view = catalog.views["returns"]
    body = catalog.render_body("returns").replace("ln(close / lag(close, 1) OVER w)", "1")  # INTEGER, not DOUBLE
    with warehouse.connect(path) as conn:
        before = conn.execute(f"SELECT count(*), sum(ret_1b) FROM {view.table}").fetchone()
        with pytest.raises(feature_store.ViewSchemaError, match=r"'returns' v3.*'ret_1b' is INTEGER, declared DOUBLE"):
            feature_store.write_indexed(conn, view, body)
        assert conn.execute(f"SELECT count(*), sum(ret_1b) FROM {view.table}").fetchone() == before
        assert feature_store.check_view_schema(conn, view) == []


def test_missing_upstream_is_a_clear_error(tmp_path: Path, catalog: FeatureCatalog) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as conn, pytest.raises(LookupError, match="raw.market_bars"):
        feature_store.materialize_view(conn, catalog, "returns")


def test_new_version_keeps_the_old_one_readable(feature_warehouse: Path, catalog: FeatureCatalog) -> None:
    current = RETURNS.version
    bumped = FeatureView.model_validate(
        {
            **RETURNS.model_dump(by_alias=True),
            "version": current + 1,
            "sql": RETURNS.sql.replace("lag(close, 4)", "lag(close, 8)"),
        }
    )
    catalog_next = FeatureCatalog.from_views([bumped if v.name == "returns" else v for v in FEATURE_VIEWS])
    with warehouse.connect(feature_warehouse) as conn:
        feature_store.write_registry(conn, catalog, run_id="run-1")
        for name in catalog_next.topological_order():
            feature_store.materialize_view(conn, catalog_next, name)
        feature_store.write_registry(conn, catalog_next, run_id="run-2")
        history = feature_store.registry_versions(conn, "returns")
        assert history[["version", "is_current", "dagster_run_id"]].values.tolist() == [
            [current + 1, True, "run-2"],
            [current, False, "run-1"],
        ]
        assert history["feature_graph_hash"].nunique() == 2
        assert warehouse.table_exists(conn, RETURNS.table) and warehouse.table_exists(conn, bumped.table)

        old, new = feature_store.resolve_view_refs(conn, catalog_next, [f"returns@{current}", "returns"])
        assert (old.table, new.table) == (RETURNS.table, bumped.table)
        # as of the moment each row became available, retrieval returns exactly that row
        latest_five = f"FROM {RETURNS.table} ORDER BY event_ts DESC, symbol LIMIT 5"
        entities = conn.execute(f"SELECT symbol, created_ts AS event_timestamp {latest_five}").fetchdf()
        got_old = get_historical_features(conn, entities, [old])
        direct = conn.execute(f"SELECT ret_4b {latest_five}").fetchdf()["ret_4b"]
        np.testing.assert_allclose(got_old["ret_4b"], direct)
        with pytest.raises(LookupError, match=rf"registered versions: \[{current}, {current + 1}\]"):
            feature_store.resolve_view_refs(conn, catalog_next, ["returns@77"])
        lineage = conn.execute("SELECT upstream, downstream FROM features.lineage ORDER BY ALL").fetchall()
    assert (bumped.table, catalog_next.views["cross_sectional"].table) in lineage


def test_latest_vectors_take_the_last_bar_of_every_symbol(
    feature_warehouse: Path, catalog: FeatureCatalog, small_bars: pd.DataFrame
) -> None:
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        vectors = feature_store.latest_vectors(conn, catalog)
        last = conn.execute(
            "SELECT symbol, ret_1b FROM features.returns__v3 QUALIFY row_number() OVER "
            "(PARTITION BY symbol ORDER BY event_ts DESC) = 1 ORDER BY symbol"
        ).fetchdf()
    assert vectors["entity_key"].tolist() == sorted(small_bars["symbol"].unique())
    np.testing.assert_allclose(vectors["ret_1b"], last["ret_1b"])
    assert set(catalog.views["cross_sectional"].features) <= set(vectors.columns)
    assert (vectors["returns__event_ts"] == small_bars["timestamp"].max() + pd.Timedelta(hours=1)).all()


def test_catalog_page_documents_every_view(catalog: FeatureCatalog) -> None:
    page = feature_store.render_catalog_markdown(catalog)
    for view in catalog.views.values():
        assert f"## {view.name}" in page and view.table in page
        for feature in view.features:
            assert f"| {feature} |" in page
    committed = Path(__file__).resolve().parents[3] / "docs" / "feature_catalog.md"
    assert committed.read_text() == page, "docs/feature_catalog.md is stale: run `mlops features docs`"
