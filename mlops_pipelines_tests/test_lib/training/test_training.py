"""Training sets (labels, purge, hash), training metrics, and a full training run on a real MLflow store."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER
from mlops_pipelines.defs.training.assets import training_window
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.core.tracking import MODEL_FILE, ArtifactIntegrityError, Tracking, TrackingConfigError
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.lifecycle import State, open_lifecycle
from mlops_pipelines.lib.governance.model_loading import FeatureGraphMismatch, load_for_inference
from mlops_pipelines.lib.monitoring.feature_drift import model_importance
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.training_run import train_and_register


@pytest.fixture
def training_set(feature_warehouse: Path, catalog: FeatureCatalog) -> datasets.TrainingSet:
    with warehouse.connect(feature_warehouse) as conn:
        return datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog)


def test_labels_match_a_pandas_computation(feature_warehouse: Path, small_bars: pd.DataFrame) -> None:
    bars = small_bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    close = bars.groupby("symbol")["close"]
    bars["fwd4"] = np.log(close.shift(-4) / bars["close"])
    r = np.log(bars["close"] / close.shift(1))
    bars["fwd_vol24"] = pd.concat([r.groupby(bars["symbol"]).shift(-k) for k in range(1, 25)], axis=1).std(
        axis=1, skipna=False
    ) * np.sqrt(8760)
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        direction = conn.execute(datasets.label_sql(DIRECTION_CLASSIFIER)).fetchdf()
        vol = conn.execute(datasets.label_sql(VOLATILITY_FORECASTER)).fetchdf()
    expected = bars.dropna(subset=["fwd4"])
    assert len(direction) == len(expected)
    merged = direction.merge(
        expected.assign(event_timestamp=expected["timestamp"] + pd.Timedelta(minutes=65)),
        on=["symbol", "event_timestamp"],
    )
    assert len(merged) == len(direction)
    np.testing.assert_allclose(merged["forward_return"], merged["fwd4"], rtol=1e-12)
    assert (merged["label"] == (merged["fwd4"] > 0).astype(float)).all()
    assert (merged["label_available_at"] == merged["timestamp"] + pd.Timedelta(hours=5)).all()
    vol_expected = bars.dropna(subset=["fwd_vol24"])
    merged_vol = vol.merge(
        vol_expected.assign(event_timestamp=vol_expected["timestamp"] + pd.Timedelta(minutes=65)),
        on=["symbol", "event_timestamp"],
    )
    assert len(merged_vol) == len(vol) == len(vol_expected)
    np.testing.assert_allclose(merged_vol["label"], merged_vol["fwd_vol24"], rtol=1e-9)


def test_splits_are_ordered_and_purged(training_set: datasets.TrainingSet) -> None:
    frame = training_set.frame
    parts = {s: frame[frame["split"] == s] for s in datasets.SPLITS}
    assert all(len(p) for p in parts.values())
    assert parts["train"]["event_timestamp"].max() < parts["validation"]["event_timestamp"].min()
    assert parts["validation"]["event_timestamp"].max() < parts["test"]["event_timestamp"].min()
    # no label of one split is known only after the next split has started
    assert parts["train"]["label_available_at"].max() <= parts["validation"]["event_timestamp"].min()
    assert parts["validation"]["label_available_at"].max() <= parts["test"]["event_timestamp"].min()
    assert (frame["label_available_at"] > frame["event_timestamp"]).all()
    assert "sector" not in training_set.features and "ret_24b_xs_rank" in training_set.features


def test_dataset_hash_covers_full_content(training_set: datasets.TrainingSet) -> None:
    frame = training_set.frame
    assert datasets.dataset_hash(frame.sample(frac=1.0, random_state=1)) == training_set.dataset_hash  # row order
    changed = frame.copy()
    changed.loc[changed.index[-1], "ret_1b"] = 123.0  # the very last row: not a head() hash
    assert datasets.dataset_hash(changed) != training_set.dataset_hash
    code = (
        "import pandas as pd, sys; from mlops_pipelines.lib.training.datasets import dataset_hash; "
        "print(dataset_hash(pd.read_pickle(sys.argv[1])))"
    )
    path = Path(__file__).parent / "_frame.pkl"
    try:
        frame.to_pickle(path)
        other = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    finally:
        path.unlink(missing_ok=True)
    assert other.stdout.strip() == training_set.dataset_hash


def test_stored_training_sets_are_read_through_their_owner(training_set: datasets.TrainingSet, tmp_path: Path) -> None:
    """The registry's read functions (what the CLI and the gate use): nothing before the first set, then the set by
    id and by hash, newest first; a second store of the same content is a second registry row of the same id."""
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        assert datasets.list_datasets(conn) == [] and datasets.dataset_record(conn, "x") is None
        with pytest.raises(datasets.NotFound, match="materialize training/direction_classifier_dataset"):
            datasets.load_training_set(conn, DIRECTION_CLASSIFIER)
        first = datasets.store_training_set(conn, DIRECTION_CLASSIFIER, training_set, run_id="r1")
        second = datasets.store_training_set(conn, DIRECTION_CLASSIFIER, training_set, run_id="r2")
        listed = datasets.list_datasets(conn)
        record = datasets.dataset_record(conn, first)
        by_hash = datasets.dataset_by_hash(conn, training_set.dataset_hash)
        assert datasets.load_training_set(conn, DIRECTION_CLASSIFIER).dataset_hash == training_set.dataset_hash
    assert first == second == training_set.dataset_hash[:12]
    assert [r["dagster_run_id"] for r in listed] == ["r2", "r1"]
    assert record is not None and by_hash is not None and record == by_hash == listed[0]
    assert record["table_name"] == datasets.immutable_table(training_set.dataset_hash)
    assert record["row_count"] == len(training_set.frame)
    assert record["last_decision"] == training_set.frame["event_timestamp"].max()


def test_artifact_downloads_hide_the_progress_bar_without_changing_the_environment(
    tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's progress bar is off while our code downloads (it only clutters run logs), the environment is as it
    was afterwards, and an operator's own setting wins."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    from mlflow.utils.file_utils import ArtifactProgressBar

    seen: list[bool] = []
    original = ArtifactProgressBar.set_pbar

    def spy(bar: ArtifactProgressBar) -> None:
        seen.append(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get())
        original(bar)

    monkeypatch.setattr(ArtifactProgressBar, "set_pbar", spy)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with tracking.run("downloads", run_name="r", tags={}) as run:
        tracking.log_dict(run.info.run_id, {"a": 1}, "a.json")
    assert json.loads(tracking.read_text_artifact(run.info.run_id, "a.json")) == {"a": 1}
    assert seen and not any(seen)
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    seen.clear()
    tracking.read_bytes_artifact(run.info.run_id, "a.json")
    assert seen == [True] and os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"


def test_a_missing_artifact_or_run_is_our_not_found_never_an_mlflow_exception(tracking: Tracking) -> None:
    from mlflow.exceptions import MlflowException

    from mlops_pipelines.lib.core.errors import MlopsError, NotFound

    with tracking.run("missing", run_name="r", tags={}) as run:
        pass
    for run_id, path in ((run.info.run_id, "manifest.json"), ("0" * 32, "manifest.json")):
        with pytest.raises(NotFound, match=path) as caught:
            tracking.read_text_artifact(run_id, path)
        assert isinstance(caught.value, MlopsError | LookupError) and not isinstance(caught.value, MlflowException)
    with pytest.raises(NotFound):
        tracking.read_bytes_artifact(run.info.run_id, "backtest/equity_holdout.png")


def test_file_store_is_refused() -> None:
    with pytest.raises(TrackingConfigError, match="file store"):
        Tracking("file:///tmp/mlruns", "sqlite:///x.db", "/tmp/a")
    with pytest.raises(TrackingConfigError, match="empty"):
        Tracking("", "", "/tmp/a")


def test_training_run_registers_a_verified_version(
    training_set: datasets.TrainingSet,
    tracking: Tracking,
    feature_warehouse: Path,
    catalog: FeatureCatalog,
    tmp_path: Path,
) -> None:
    governed = partial(open_lifecycle, tracking.client(), feature_warehouse, tmp_path / "audit.key")
    outcome = train_and_register(
        DIRECTION_CLASSIFIER,
        training_set,
        catalog,
        tracking,
        governed,
        actor="alice",
        dagster_run_id="run-123",
        asset_key="direction_classifier",
    )
    client = tracking.client()
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_run_id"] == "run-123" and run.data.tags["asset_key"] == "direction_classifier"
    assert {"test_auc", "test_auc_ci_low", "test_auc_ci_high", "hit_rate"} <= set(run.data.metrics)
    metrics = run.data.metrics
    assert metrics["test_auc_ci_low"] < metrics["test_auc"] < metrics["test_auc_ci_high"]
    # strategy metrics come from the holdout backtest after costs (evaluation), never from a cost-free P&L here
    assert not {"sharpe", "max_drawdown"} & set(metrics)
    assert run.data.params["num_boost_round"] == str(DIRECTION_CLASSIFIER.num_boost_round)
    assert [i.dataset.digest for i in run.inputs.dataset_inputs] == [training_set.dataset_hash[:36]]
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"manifest.json", "model_card.md", "feature_importance.png"} <= artifacts
    manifest = json.loads(tracking.read_text_artifact(outcome.run_id, "manifest.json"))
    for key in (
        "feature_graph_hash",
        "training_config_hash",
        "dataset_hash",
        "git_commit",
        "code_version",
        "dagster_run_id",
        "package_versions",
        "metrics",
        "config",
    ):
        assert manifest[key], key
    assert manifest["feature_graph_hash"] == catalog.graph_hash()
    assert manifest["dataset_hash"] == training_set.dataset_hash
    # the manifest is written with sorted keys; the importance keeps its gain order, and monitoring reads it so
    by_gain = list(outcome.model.importance.index)
    assert by_gain != sorted(by_gain)  # else the test could not tell gain order from alphabetical
    assert [name for name, _ in manifest["feature_importance"]] == by_gain
    deployed = DeployedVersion(DIRECTION_CLASSIFIER, outcome.version, "staging", outcome.run_id)
    assert [name for name, _ in model_importance(tracking, deployed, catalog)] == by_gain  # type: ignore[misc]
    assert manifest["training_window"]["cutoff"] == training_set.cutoff.isoformat()  # type: ignore[union-attr]

    mv = client.get_model_version("direction_classifier", outcome.version)
    assert mv.tags["lifecycle_state"] == State.TRAINED
    assert mv.tags["dataset_hash"] == training_set.dataset_hash and mv.tags["trained_by"] == "alice"
    assert "dataset hash" in outcome.model_card and training_set.dataset_hash in outcome.model_card

    with governed() as lifecycle:
        loaded = load_for_inference(
            lifecycle, tracking, "direction_classifier", outcome.version, live_graph_hash=catalog.graph_hash()
        )
    test = training_set.split("test")
    np.testing.assert_allclose(
        loaded.booster.predict(test[training_set.features]), outcome.model.booster.predict(test[training_set.features])
    )
    # a fresh process (no MLflow URI set globally, as in serving or monitoring) loads it from our URIs alone
    script = (
        "import sys; from mlops_pipelines.lib.core.tracking import Tracking; t = Tracking(*sys.argv[1:4]); "
        "mv = t.client().get_model_version('direction_classifier', sys.argv[4]); "
        "print(t.load_verified_booster(mv.source, mv.tags['artifact_sha256']).num_trees())"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            tracking.tracking_uri,
            tracking.registry_uri,
            tracking.artifact_root,
            outcome.version,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},  # set_tracking_uri exports it
    )
    assert int(fresh.stdout.split()[-1]) == loaded.booster.num_trees()

    with governed() as lifecycle:
        with pytest.raises(FeatureGraphMismatch, match="trained on feature graph"):
            load_for_inference(lifecycle, tracking, "direction_classifier", outcome.version, live_graph_hash="f" * 64)
        load_for_inference(
            lifecycle,
            tracking,
            "direction_classifier",
            outcome.version,
            live_graph_hash="f" * 64,
            override_reason="incident 42",
            actor="oncall",
        )
        history = lifecycle.history("direction_classifier")
    assert history[-1]["action"] == "override" and "incident 42" in history[-1]["reason"]

    # tamper with the stored artifact: loading refuses it
    [model_file] = [p for p in Path(tracking.artifact_root).rglob(MODEL_FILE) if outcome.manifest["model_id"] in str(p)]
    model_file.write_text(model_file.read_text().replace("tree_sizes", "tree_sizes ", 1))
    with governed() as lifecycle, pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_for_inference(
            lifecycle, tracking, "direction_classifier", outcome.version, live_graph_hash=catalog.graph_hash()
        )


def test_failed_training_leaves_no_version_and_a_failed_run(
    training_set: datasets.TrainingSet,
    tracking: Tracking,
    feature_warehouse: Path,
    catalog: FeatureCatalog,
    tmp_path: Path,
) -> None:
    broken = DIRECTION_CLASSIFIER.model_copy(update={"hyperparameters": {"objective": "no_such_objective"}})
    with pytest.raises(Exception, match="no_such_objective"):
        train_and_register(
            broken,
            training_set,
            catalog,
            tracking,
            partial(open_lifecycle, tracking.client(), feature_warehouse, tmp_path / "audit.key"),
            actor="alice",
            dagster_run_id="run-9",
            asset_key="direction_classifier",
        )
    client = tracking.client()
    [run] = client.search_runs([client.get_experiment_by_name("direction_classifier").experiment_id])
    assert run.info.status == "FAILED"
    assert client.search_model_versions("name = 'direction_classifier'") == []


def test_a_copied_data_directory_trains_into_its_own_artifacts(
    training_set: datasets.TrainingSet,
    tracking: Tracking,
    feature_warehouse: Path,
    catalog: FeatureCatalog,
    tmp_path: Path,
) -> None:
    """MLflow stores absolute artifact locations: a data directory copied elsewhere used to write its new runs'
    artifacts into the original. Trained in the copy, nothing new appears in the original, and the copy reads
    both versions from its own files."""
    original = tmp_path / "original"
    original.mkdir()
    for name in ("mlflow", feature_warehouse.name):
        shutil.move(tmp_path / name, original / name)
    first = Tracking(
        f"sqlite:///{original / 'mlflow' / 'mlflow.db'}", f"sqlite:///{original / 'mlflow' / 'mlflow.db'}",
        str(original / "mlflow" / "artifacts"),
    )  # fmt: skip

    def train_in(root: Path, tracking: Tracking) -> str:
        governed = partial(open_lifecycle, tracking.client(), root / feature_warehouse.name, root / "audit.key")
        kwargs = {"actor": "alice", "dagster_run_id": "run", "asset_key": "direction_classifier"}
        return train_and_register(DIRECTION_CLASSIFIER, training_set, catalog, tracking, governed, **kwargs).version

    assert train_in(original, first) == "1"
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = {p: p.stat().st_mtime_ns for p in original.rglob("*")}
    uri = f"sqlite:///{copy / 'mlflow' / 'mlflow.db'}"
    moved = Tracking(uri, uri, str(copy / "mlflow" / "artifacts"))
    assert train_in(copy, moved) == "2"
    assert {p: p.stat().st_mtime_ns for p in original.rglob("*")} == before  # the original got nothing
    client = moved.client()
    for version in ("1", "2"):
        mv = client.get_model_version("direction_classifier", version)
        assert client.get_run(mv.run_id).info.artifact_uri.startswith((copy / "mlflow" / "artifacts").as_uri())
        assert moved.artifact_location(mv.source).startswith((copy / "mlflow" / "artifacts").as_uri())
    with open_lifecycle(client, copy / feature_warehouse.name, copy / "audit.key") as lifecycle:
        shutil.rmtree(original)  # the copy stands alone
        loaded = load_for_inference(lifecycle, moved, "direction_classifier", "1", live_graph_hash=catalog.graph_hash())
    assert loaded.booster.num_trees() > 0


def test_a_training_cutoff_keeps_later_labels_out_and_a_short_history_is_refused(
    feature_warehouse: Path, catalog: FeatureCatalog
) -> None:
    """The training window of a run (its ``training_cutoff`` and ``training_min_history_days`` tags, the cutoff the
    retraining sensor sets): no label known after the cutoff, the cutoff kept with the set; too little history
    before it is refused, naming the setting; a malformed tag is an error naming it."""
    cutoff = datetime(2026, 1, 8, tzinfo=UTC)
    with warehouse.connect(feature_warehouse) as conn:
        window = training_window({"training_cutoff": "2026-01-08T00:00:00", "training_min_history_days": "5"})
        assert window == datasets.TrainingWindow(cutoff=cutoff, min_history_days=5.0)
        data = datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog, window)
        full = datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog)
        with pytest.raises(datasets.InsufficientHistory, match="minimum history of 8 days"):
            datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog, replace(window, min_history_days=8))
    assert data.frame["label_available_at"].max() <= cutoff < full.frame["label_available_at"].max()
    assert data.cutoff == cutoff and full.cutoff is not None and full.cutoff > cutoff
    for tags, field in (
        ({"training_cutoff": "yesterday"}, "training_cutoff"),
        ({"training_min_history_days": "-1"}, "training_min_history_days"),
    ):
        with pytest.raises(ConfigError, match=field):
            training_window(tags)
