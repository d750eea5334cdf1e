"""Batch inference and the champion/challenger comparison as Dagster runs them: real DuckDB warehouse (bars and
every feature view), real MLflow store, real LightGBM versions governed through the lifecycle, a real instance.

Bars and features are built once per module; each test works on its own copy and arranges the governance it needs
(a champion, a challenger no better, one clearly better, a version trained on another feature graph)."""

import json
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER
from mlops_pipelines.defs.inference.assets import batch_predictions
from mlops_pipelines.defs.monitoring.champion_challenger import champion_challenger
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, open_lifecycle
from mlops_pipelines.lib.governance.model_loading import FeatureGraphMismatch
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.lib.inference.batch import BATCH_TABLE, partition_rows
from mlops_pipelines.lib.monitoring.champion_challenger import verdicts
from mlops_pipelines.lib.monitoring.prediction_log import decision_rows
from mlops_pipelines.lib.monitoring.served_predictions import SERVED_TABLE
from mlops_pipelines.lib.training import training
from mlops_pipelines.resources import AlertsResource, MlflowResource, WarehouseResource

CLASSIFIER, FORECASTER = DIRECTION_CLASSIFIER.name, VOLATILITY_FORECASTER.name
CATALOG = load_catalog()
PASSING = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 0.0}})
HOUR = "2026-01-09-12:00"  # batch inference's partition
LAST_HOUR = "2026-01-10-23:00"  # the champion/challenger window: the week before this hour's end
ASSETS = {a.key.path[-1]: a for a in batch_predictions}


@dataclass(frozen=True)
class World:
    root: Path
    db: Path
    tracking: Tracking
    features: pd.DataFrame  # every labelled classifier decision, with its point-in-time features and label

    @property
    def resources(self) -> dict[str, object]:
        return {
            "warehouse": WarehouseResource(path=str(self.db), audit_key_file=str(self.root / "audit.key")),
            "mlflow": MlflowResource(
                tracking_uri=self.uri, registry_uri=self.uri, artifact_root=str(self.root / "mlflow" / "artifacts")
            ),
            "alerts": AlertsResource(sinks=["jsonl"], directory=str(self.root / "alerts")),
        }

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    def lifecycle(self) -> AbstractContextManager[Lifecycle]:
        return open_lifecycle(self.tracking.client(), self.db, self.root / "audit.key")

    def alerts(self) -> list[dict]:
        path = self.root / "alerts" / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, small_bars: pd.DataFrame, mlflow_template: Path) -> World:
    """Bars, features and an empty registry, built once per module (and per xdist worker)."""
    root = tmp_path_factory.mktemp("batch")
    db = root / "warehouse.duckdb"
    with warehouse.connect(db) as conn:
        conn.register("_bars", small_bars)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        conn.unregister("_bars")
        for name in CATALOG.topological_order():
            feature_store.materialize_view(conn, CATALOG, name)
        spec = DIRECTION_CLASSIFIER
        start, end = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)
        decisions = decision_rows(conn, spec, start, end, labelled_by=end)
        views = [CATALOG.views[v] for v in spec.feature_views]
        features = get_historical_features(conn, decisions, views)
    (root / "mlflow").mkdir()
    shutil.copy(mlflow_template, root / "mlflow" / "mlflow.db")
    return at(root, features)


def at(root: Path, features: pd.DataFrame) -> World:
    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    return World(root, root / "warehouse.duckdb", Tracking(uri, uri, str(root / "mlflow" / "artifacts")), features)


@pytest.fixture
def world(template: World, tmp_path: Path) -> World:
    """A copy of the template for each test: every test arranges the governance it needs (tests may run in any
    order, on any worker)."""
    shutil.copytree(template.root, tmp_path / "world")
    return at(tmp_path / "world", template.features)


def with_champion(world: World) -> str:
    """An uninformed classifier in PRODUCTION (the champion); its version."""
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    version = register(world, CLASSIFIER, classifier(world, 0), world.features[features])
    with world.lifecycle() as lifecycle:
        stage(lifecycle, CLASSIFIER, version)
        lifecycle.promote_to_production(CLASSIFIER, version, actor="ops", reason="test")
    return version


def register(world: World, model: str, booster: lgb.Booster, x: pd.DataFrame, graph_hash: str | None = None) -> str:
    tracking = world.tracking
    with tracking.run(model, run_name="test", tags={"trained_by": "trainer"}) as run:
        logged = tracking.log_booster(run.info.run_id, booster, x.head(3))
    tags = {
        "trained_by": "trainer",
        "artifact_sha256": logged.artifact_sha256,
        "feature_graph_hash": graph_hash or CATALOG.graph_hash(),
    }
    with world.lifecycle() as lifecycle:
        mv = lifecycle.register(
            model,
            source=logged.model_uri,
            run_id=run.info.run_id,
            model_id=logged.model_id,
            tags=tags,
            actor="trainer",
            reason="test",
        )
    return str(mv.version)


def stage(lifecycle: Lifecycle, model: str, version: str) -> None:
    lifecycle.gate(model, version, evaluate(PASSING, model=model, strategy="s", metrics={"sharpe": 1.0}), actor="ci")
    lifecycle.approve(model, version, approver="reviewer", comment="ok")
    lifecycle.request_review(model, version, report_uri="report.html", actor="pipeline")
    lifecycle.decide_review(model, version, approve=True, reviewer="compliance", comment="signed off")


def classifier(world: World, seed: int, *, informed: bool = False, rounds: int = 20) -> lgb.Booster:
    """On the classifier's real features: ``informed`` learns the real labels (of these very decisions: clearly
    better on them); otherwise coin-flip labels (uninformative: two such are equally good)."""
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    x = world.features[features]
    rng = np.random.default_rng(seed)
    y = world.features["label"].to_numpy() if informed else rng.integers(0, 2, len(x))
    params = {"objective": "binary", "verbosity": -1, "seed": seed, "num_leaves": 7, "learning_rate": 0.05}
    return lgb.train(params, lgb.Dataset(x, y), rounds)


def materialize(world: World, assets: list, partition: str, instance: dg.DagsterInstance, **kwargs):
    return dg.materialize(assets, partition_key=partition, resources=world.resources, instance=instance, **kwargs)


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(result.run_id))


def test_no_production_version_skips_the_hour_saying_so(world: World, instance: dg.DagsterInstance) -> None:
    result = materialize(world, [ASSETS[f"{CLASSIFIER}_predictions"]], HOUR, instance)
    assert result.success and result.get_asset_materialization_events() == []  # the hour stays missing
    assert f"{CLASSIFIER} has no PRODUCTION version: batch inference skipped" in logs(instance, result)
    with warehouse.connect(world.db, read_only=True) as conn:
        assert partition_rows(conn, CLASSIFIER, HOUR).empty


def test_batch_scores_every_symbol_of_the_hour_once_whatever_is_re_run(
    world: World, instance: dg.DagsterInstance
) -> None:
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    champion = classifier(world, 0)  # the same booster as with_champion's, to compare scores
    version = with_champion(world)
    for _ in range(2):  # a re-run replaces the hour in both tables
        result = materialize(world, [ASSETS[f"{CLASSIFIER}_predictions"]], HOUR, instance)
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["dagster/row_count"].value == 6 and meta["version"].value == version
    assert meta["feature_graph_hash"].value == CATALOG.graph_hash() and meta["unscored"].value == 0
    assert "| symbol " in meta["preview"].value
    with warehouse.connect(world.db, read_only=True) as conn:
        rows = partition_rows(conn, CLASSIFIER, HOUR)
        served = conn.execute(
            f"SELECT symbol, version, role, alias, prediction FROM {SERVED_TABLE} ORDER BY symbol"
        ).fetchdf()
        [(total,)] = conn.execute(f"SELECT count(*) FROM {BATCH_TABLE}").fetchall()
    # every symbol, its decision at five past the hour (the bar that closed at 12:00), once
    assert sorted(rows["symbol"]) == sorted(world.features["symbol"].unique()) and total == 6
    assert set(rows[ENTITY_TIME]) == {pd.Timestamp("2026-01-09 12:05", tz="UTC")}
    # the same scores as point-in-time features through the booster directly
    expected = world.features[world.features[ENTITY_TIME] == pd.Timestamp("2026-01-09 12:05", tz="UTC")]
    expected = expected.sort_values("symbol")
    np.testing.assert_allclose(rows["prediction"], training.predict(champion, expected, features), rtol=1e-12)
    assert len(served) == 6 and set(served["role"]) == {"batch"} and set(served["version"]) == {version}
    np.testing.assert_allclose(served["prediction"], rows["prediction"])


def test_a_challenger_no_better_than_the_champion_is_undecided(world: World, instance: dg.DagsterInstance) -> None:
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    with_champion(world)
    challenger = register(world, CLASSIFIER, classifier(world, 1), world.features[features])
    with world.lifecycle() as lifecycle:
        stage(lifecycle, CLASSIFIER, challenger)
        assert lifecycle.challenger(CLASSIFIER) == challenger
    result = materialize(world, [champion_challenger], LAST_HOUR, instance)
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta[f"{CLASSIFIER}_verdict"].value == "undecided", meta["comparisons"].value
    assert meta[f"{CLASSIFIER}_n_decisions"].value > 500 and meta[f"{CLASSIFIER}_p_value"].value > 0.01
    assert meta[f"{FORECASTER}_verdict"].value == "no_champion"  # said so, no verdict written
    with warehouse.connect(world.db, read_only=True) as conn:
        stored = verdicts(conn)
    assert stored[["model", "partition_key", "verdict"]].values.tolist() == [[CLASSIFIER, LAST_HOUR, "undecided"]]
    assert not [a for a in world.alerts() if a["kind"] == "challenger_better"]


def test_an_empty_window_says_so_and_writes_no_verdict(world: World, instance: dg.DagsterInstance) -> None:
    with_champion(world)
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    challenger = register(world, CLASSIFIER, classifier(world, 1), world.features[features])
    with world.lifecycle() as lifecycle:
        stage(lifecycle, CLASSIFIER, challenger)
    result = materialize(world, [champion_challenger], "2026-01-01-00:00", instance)  # before any label is known
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta[f"{CLASSIFIER}_verdict"].value == "no_labelled_decisions"
    assert "no decision with a known label in the window, no verdict" in meta["comparisons"].value
    with warehouse.connect(world.db, read_only=True) as conn:
        assert verdicts(conn).empty


def test_a_clearly_better_challenger_raises_an_alert_and_changes_nothing(
    world: World, instance: dg.DagsterInstance
) -> None:
    features = DIRECTION_CLASSIFIER.features(CATALOG)
    with_champion(world)
    better = register(world, CLASSIFIER, classifier(world, 2, informed=True, rounds=200), world.features[features])
    with world.lifecycle() as lifecycle:
        stage(lifecycle, CLASSIFIER, better)
        assert lifecycle.challenger(CLASSIFIER) == better
        champion = lifecycle.champion(CLASSIFIER)
    for _ in range(2):  # a re-run replaces the hour's verdict
        result = materialize(world, [champion_challenger], LAST_HOUR, instance)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta[f"{CLASSIFIER}_verdict"].value == "challenger better"
    assert meta[f"{CLASSIFIER}_statistic"].value < 0 and meta[f"{CLASSIFIER}_p_value"].value < 0.01
    [alert] = [a for a in world.alerts() if a["kind"] == "challenger_better"]  # once a day per challenger
    assert alert["subject"] == CLASSIFIER and f"v{better} vs champion v{champion}" in alert["summary"]
    assert alert["details"]["n_decisions"] > 500 and "p " in alert["summary"]
    with world.lifecycle() as lifecycle:  # promotion stays governed: nothing moved
        assert lifecycle.champion(CLASSIFIER) == champion and lifecycle.challenger(CLASSIFIER) == better
    with warehouse.connect(world.db, read_only=True) as conn:
        [row] = verdicts(conn).to_dict("records")  # the hour's verdict replaced, not added
    assert row["verdict"] == "challenger better" and row["challenger"] == better and row["hac_lag"] == 8


def test_a_version_of_another_feature_graph_fails_the_batch_with_the_loading_message(
    world: World, instance: dg.DagsterInstance
) -> None:
    features = VOLATILITY_FORECASTER.features(CATALOG)
    x = world.features.reindex(columns=features)
    booster = lgb.train({"objective": "regression", "verbosity": -1}, lgb.Dataset(x, np.abs(x.iloc[:, 0])), 5)
    version = register(world, FORECASTER, booster, x, graph_hash="f" * 64)
    with world.lifecycle() as lifecycle:
        stage(lifecycle, FORECASTER, version)
        lifecycle.promote_to_production(FORECASTER, version, actor="ops", reason="test")
    result = materialize(world, [ASSETS[f"{FORECASTER}_predictions"]], HOUR, instance, raise_on_error=False)
    assert not result.success
    expected = str(FeatureGraphMismatch(FORECASTER, version, "f" * 64, CATALOG.graph_hash()))
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None and error.cause is not None  # Dagster wraps the asset's exception: that is the cause
    assert error.cause.cls_name == "FeatureGraphMismatch" and error.cause.message.strip().endswith(expected)
    with warehouse.connect(world.db, read_only=True) as conn:
        assert partition_rows(conn, FORECASTER, HOUR).empty
