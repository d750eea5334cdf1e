"""Drift reports on a market with an injected regime shift: quiet before it, SEVERE after it."""

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.alerts import Alerter, build_sinks
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.gate import training_drift_severity
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.monitoring import feature_drift
from mlops_pipelines.lib.monitoring.drift_plots import histograms_png
from mlops_pipelines.lib.monitoring.drift_report import build_prediction_report, build_report
from mlops_pipelines.lib.monitoring.drift_status import read_status
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow, MonitoringFiles
from mlops_pipelines.lib.training.datasets import (
    TrainingSet,
    assign_splits,
    build_training_set,
    dataset_hash,
    store_training_set,
)
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.lib.training.training import train

SHIFT = datetime(2026, 2, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def shifted_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlops_pipelines.catalog.feature_views import load_catalog

    catalog = load_catalog()
    path = tmp_path_factory.mktemp("drift") / "w.duckdb"
    config = SyntheticMarketConfig(n_symbols=24, regime_shift_at=SHIFT)  # the demo's market
    bars = validate_bars(generate_bars(config, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)))
    with warehouse.connect(path) as conn:
        conn.register("_bars", bars.accepted)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    return path


def report_at(path: Path, catalog: FeatureCatalog, end: datetime, profile_cache: Path | None = None):
    with warehouse.connect(path) as conn:
        return build_report(
            conn,
            DIRECTION_CLASSIFIER,
            "1",
            catalog,
            load_drift_policy_file(),
            DIRECTION_CLASSIFIER.features(catalog),
            window_end=end,
            current=timedelta(days=1),
            reference=timedelta(days=30),
            profile_cache=profile_cache,
        )


def test_regime_shift_is_severe(shifted_warehouse: Path, catalog: FeatureCatalog) -> None:
    before = report_at(shifted_warehouse, catalog, datetime(2026, 2, 14, tzinfo=UTC))
    after = report_at(shifted_warehouse, catalog, datetime(2026, 2, 21, tzinfo=UTC))  # the first day of the shift
    # short-horizon returns: quiet before the shift, SEVERE after it (variance x 6.25 in the synthetic market)
    assert before.stats.set_index("feature").loc["ret_1b", "severity"] == "NORMAL"
    assert after.severity == "SEVERE"
    assert (after.stats["severity"] == "SEVERE").sum() > (before.stats["severity"] == "SEVERE").sum()
    stats = after.stats.set_index("feature")
    assert stats.loc["ret_1b", "variance_ratio"] > 3 and stats.loc["ret_1b", "severity"] == "SEVERE"
    views = {f"reconstruction:{v}" for v in DIRECTION_CLASSIFIER.feature_views}  # the multivariate signal
    assert set(stats.index) == {*DIRECTION_CLASSIFIER.features(catalog), "sector", *views}
    assert stats.loc["sector", "kind"] == "categorical" and stats.loc["sector", "severity"] == "NORMAL"
    assert stats.loc["sector", "importance"] == 0  # reported, not weighed: the model does not use it
    assert (stats.loc[sorted(views), "reconstruction_error_ratio"] > 1).all()
    # every limit and how many reference windows made it, with the reason, stored with the raw statistics
    assert stats.loc["ret_1b", "null_windows"] == 30 * 24 - 24 + 1
    assert stats.loc["ret_1b", "variance_ratio"] > stats.loc["ret_1b", "variance_factor_severe"]
    assert "variance ratio" in stats.loc["ret_1b", "reason"] and after.rule.startswith("SEVERE: SEVERE features")
    rows = after.rows("2026-02-20-23:00")
    assert len(rows) == len(stats) and (rows["model_severity"] == "SEVERE").all()
    assert rows["window_end"].iloc[0] == datetime(2026, 2, 21, tzinfo=UTC)
    assert rows["reference_start"].iloc[0] == datetime(2026, 1, 21, tzinfo=UTC)
    assert (rows["model_rule"] == after.rule).all() and (rows["window_hours"] == 24).all()
    assert histograms_png(after, after.worst(3)["feature"].tolist()).startswith(b"\x89PNG")


def test_an_evidently_failure_loses_neither_the_report_nor_its_verdict_nor_its_alert(
    shifted_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path, tracking: Tracking
) -> None:
    """The hourly feature-drift run after the shift, with the Evidently folder unwritable (a file in its place):
    the rows persist, the status file and the alert say SEVERE, the failure is noted for the operator."""
    path = tmp_path / "w.duckdb"
    shutil.copy(shifted_warehouse, path)
    blocked = tmp_path / "evidently"
    blocked.write_text("a file where the folder should be")
    files = MonitoringFiles(tmp_path / "drift_status.json", tmp_path / "profiles", blocked)
    sinks = build_sinks(["jsonl"], jsonl_path=tmp_path / "alerts.jsonl", webhook_url=None, slack_url=None)
    alerter = Alerter(sinks, tmp_path / "sent.json")
    deployed = [DeployedVersion(DIRECTION_CLASSIFIER, "1", "staging", run_id="")]
    window = HourlyWindow("2026-02-22-23:00", datetime(2026, 2, 23, tzinfo=UTC))
    with warehouse.connect(path) as conn:
        run = feature_drift.monitor_feature_drift(
            conn,
            deployed,
            window,
            catalog=catalog,
            policy=load_drift_policy_file(),
            tracking=tracking,
            files=files,
            alerter=alerter,
        )
        stored = feature_drift.verdicts(conn)
    assert [r.severity for r in run.reports] == ["SEVERE"]
    assert run.evidently["direction_classifier"].startswith("not rendered")
    assert run.notes and "Evidently report for direction_classifier not rendered" in run.notes[0]
    assert stored[["model", "partition_key", "severity"]].values.tolist() == [
        ["direction_classifier", "2026-02-22-23:00", "SEVERE"]
    ]
    assert read_status(files.status_file)["direction_classifier"]["feature_drift"]["severity"] == "SEVERE"
    assert '"kind": "severe_drift"' in (tmp_path / "alerts.jsonl").read_text()


def test_empty_current_window_is_insufficient_never_normal(shifted_warehouse: Path, catalog: FeatureCatalog) -> None:
    report = report_at(shifted_warehouse, catalog, datetime(2026, 6, 1, tzinfo=UTC))  # no bars yet
    assert set(report.stats["status"]) == {"empty"} and report.severity == "INSUFFICIENT"
    assert report.current_rows == 0 and set(report.stats["severity"]) == {"INSUFFICIENT"}
    assert "no values in the current window" in report.stats["reason"].iloc[0]


def test_too_few_independent_values_is_insufficient_and_says_what_would_be_enough(
    shifted_warehouse: Path, catalog: FeatureCatalog
) -> None:
    """Two hours of 24 symbols: enough rows, too few independent values for the slow features (a 120-bar return
    hardly moves in two hours, and the symbols move together), which carry most of the model: INSUFFICIENT.
    (A policy asking for 10 independent values, for the mean alone too; the catalog's 5 is the floor for a 1-day
    window.)"""
    policy = load_drift_policy_file()
    asking = {"min_effective_size": 10, "min_effective_size_mean": 10}
    policy = policy.model_copy(update={"calibration": policy.calibration.model_copy(update=asking)})
    with warehouse.connect(shifted_warehouse) as conn:
        report = build_report(
            conn, DIRECTION_CLASSIFIER, "1", catalog, policy, [],
            window_end=datetime(2026, 2, 14, tzinfo=UTC), current=timedelta(hours=2), reference=timedelta(days=30),
        )  # fmt: skip
    stats = report.stats.set_index("feature")
    assert report.severity == "INSUFFICIENT" and "needs >= 50%" in report.rule
    assert stats.loc["ret_120b", "severity"] == "INSUFFICIENT" and stats.loc["ret_120b", "n_effective"] < 10
    assert "needs >= 10: about" in stats.loc["ret_120b", "reason"]


def test_calibrated_policy_is_quiet_before_the_shift_and_severe_after(
    shifted_warehouse: Path, catalog: FeatureCatalog
) -> None:
    """The demo's story, replayed (each day against the 30 days before it, both models, equal weights): no day of
    the 20 before the shift is SEVERE; its first two days are, for both. Later the rolling reference holds days
    of the new regime and its limits widen (the gate judges a version against its own training data)."""
    policy = load_drift_policy_file()
    with warehouse.connect(shifted_warehouse, read_only=True) as conn:
        for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER):

            def severity(end: datetime, spec: ModelSpec = spec) -> str:
                report = build_report(
                    conn, spec, "1", catalog, policy, [], window_end=end, current=timedelta(days=1),
                    reference=timedelta(days=30),
                )  # fmt: skip
                return f"{end:%m-%d} {report.severity}"

            before = [severity(SHIFT - timedelta(days=20 - day)) for day in range(1, 21)]
            assert not [day for day in before if day.endswith(("SEVERE", "INSUFFICIENT"))], (spec.name, before)
            after = [severity(SHIFT + timedelta(days=day)) for day in (1, 2)]
            assert all(day.endswith("SEVERE") for day in after), (spec.name, after)


@pytest.mark.slow
@pytest.mark.parametrize("plane_age_days", [0, 15])
def test_placebo_windows_drawn_from_the_reference_are_rarely_moderate_and_almost_never_severe(
    shifted_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path, plane_age_days: int
) -> None:
    """The placebo that found the bug (30 of 30 windows from inside the reference were SEVERE): 400 windows of a
    day at random hourly offsets inside the 30 calm days before the shift (seeded), each judged against those 30
    days, both models: SEVERE in at most 1%, MODERATE-or-worse in at most 5%. Also with the reference profile
    folded, as the hourly job does, from the one of 15 days earlier: its principal planes are then the oldest a
    fold keeps (fitted on a window covering half of this one), and the reference's errors are under those planes."""
    policy, reference_end = load_drift_policy_file(), SHIFT
    rng = np.random.default_rng(12)
    offsets = rng.integers(0, 30 * 24 - 24, 400)
    cache = tmp_path / "profiles" if plane_age_days else None
    with warehouse.connect(shifted_warehouse, read_only=True) as conn:
        for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER):
            memo: dict = {}
            older = report = None
            if cache is not None:
                older = build_report(
                    conn, spec, "1", catalog, policy, [], window_end=SHIFT, current=timedelta(days=1),
                    reference=timedelta(days=30), reference_end=SHIFT - timedelta(days=plane_age_days),
                    profile_cache=cache,
                )  # fmt: skip
            counts = {"NORMAL": 0, "MODERATE": 0, "SEVERE": 0, "INSUFFICIENT": 0}
            for hours in offsets:
                report = build_report(
                    conn, spec, "1", catalog, policy, [], window_end=reference_end - timedelta(hours=int(hours)),
                    current=timedelta(days=1), reference=timedelta(days=30), reference_end=reference_end, memo=memo,
                    profile_cache=cache,
                )  # fmt: skip
                counts[str(report.severity)] += 1
            if older is not None and report is not None:  # the folded profile kept the older one's planes
                planes = report.reference.reconstruction
                assert planes.keys() == older.reference.reconstruction.keys() == set(spec.feature_views)
                for view, plane in planes.items():
                    assert plane.fitted_on == older.reference.reconstruction[view].fitted_on, view
                    assert plane.fitted_on[1] == int((SHIFT - timedelta(days=15)).timestamp()) // 3600
            assert counts["INSUFFICIENT"] == 0, counts
            assert counts["SEVERE"] <= 4, (spec.name, counts)  # 1% of 400
            assert counts["SEVERE"] + counts["MODERATE"] <= 20, (spec.name, counts)  # 5%


def training_set_before(
    conn: duckdb.DuckDBPyConnection, spec: ModelSpec, catalog: FeatureCatalog, end: datetime
) -> TrainingSet:
    """The set the model is trained on when trained at ``end``: the decisions whose labels were known by then."""
    full = build_training_set(conn, spec, catalog)
    frame = full.frame[full.frame["label_available_at"] < end].drop(columns="split").reset_index(drop=True)
    frame["split"] = assign_splits(frame, spec.split_fractions)
    frame = frame[frame["split"] != "purged"].reset_index(drop=True)
    return TrainingSet(frame=frame, features=full.features, dataset_hash=dataset_hash(frame))


def trained_before(conn: duckdb.DuckDBPyConnection, spec: ModelSpec, catalog: FeatureCatalog, end: datetime):
    return train(spec, training_set_before(conn, spec, catalog, end)).booster


def test_a_version_is_judged_by_drift_against_its_own_training_data(
    shifted_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    """The promotion gate's drift: the version trained before the shift is SEVERE once the market has moved,
    and stays so; a version trained on four weeks of the new market is not, on the same day."""
    path = tmp_path / "w.duckdb"  # training sets are registered: a copy, the module's warehouse stays as it was
    shutil.copy(shifted_warehouse, path)
    policy, spec = load_drift_policy_file(), DIRECTION_CLASSIFIER
    with warehouse.connect(path) as conn:
        old, new = (
            training_set_before(conn, spec, catalog, end)
            for end in (SHIFT - timedelta(days=6), SHIFT + timedelta(days=35))
        )
        for data in (old, new):
            store_training_set(conn, spec, data, run_id="test")

        def drift(data: TrainingSet, as_of: datetime) -> str:
            return training_drift_severity(
                conn, spec, catalog, policy, dataset_hash=data.dataset_hash, importance=[], as_of=as_of
            )

        assert drift(old, SHIFT - timedelta(days=2)) != "SEVERE"  # the market it learned
        assert drift(old, SHIFT + timedelta(days=2)) == "SEVERE"
        assert drift(old, SHIFT + timedelta(days=38)) == "SEVERE"  # it never learned the new market
        assert drift(new, SHIFT + timedelta(days=38)) != "SEVERE"  # this one did
        # a window never recorded, or less than a day after the cutoff: not judged, and never shown as NORMAL
        assert training_drift_severity(conn, spec, catalog, policy, dataset_hash=None, importance=[]) == "INSUFFICIENT"
        recent = SHIFT + timedelta(days=30)  # a version trained on every bar up to then (its training cutoff)

        def unseen(as_of: datetime) -> str:
            return training_drift_severity(
                conn, spec, catalog, policy, dataset_hash=None, importance=[], cutoff=recent, as_of=as_of
            )

        assert unseen(recent) == unseen(recent + timedelta(hours=23)) == "INSUFFICIENT"
        assert unseen(recent + timedelta(days=1)) != "SEVERE"  # judged on the day after its cutoff: the new market


def test_prediction_drift_policy_is_quiet_before_the_shift_and_severe_after(
    shifted_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    """The calibration claim of drift_policy.yaml's ``predictions``, replayed with both models trained on the
    market up to 6 days before the shift: no day of the 21 before it is SEVERE, each day of the week after is."""
    path = tmp_path / "w.duckdb"  # the prediction log is written: a copy, the module's warehouse stays as it was
    shutil.copy(shifted_warehouse, path)
    policy = load_drift_policy_file()
    with warehouse.connect(path) as conn:
        for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER):
            booster: lgb.Booster = trained_before(conn, spec, catalog, SHIFT - timedelta(days=6))

            def severity(end: datetime, spec: ModelSpec = spec, booster: lgb.Booster = booster) -> str:
                report = build_prediction_report(
                    conn, spec, "1", catalog, policy, booster, window_end=end, current=timedelta(days=1),
                    reference=timedelta(days=30), max_reference_rows=50_000,
                )  # fmt: skip
                return f"{end:%m-%d} {report.severity}"

            before = [severity(SHIFT - timedelta(days=d)) for d in range(20, -1, -1)]
            assert not [day for day in before if day.endswith("SEVERE")], (spec.name, before)
            after = [severity(SHIFT + timedelta(days=d)) for d in range(1, 8)]
            assert all(day.endswith("SEVERE") for day in after), (spec.name, after)


def test_cached_profile_is_reused_for_the_same_window_content_only(
    shifted_warehouse: Path, catalog: FeatureCatalog, tmp_path: Path
) -> None:
    cache = tmp_path / "profiles"
    end = datetime(2026, 2, 23, tzinfo=UTC)
    path = tmp_path / "w.duckdb"  # this test rewrites a view: a copy, the module's warehouse stays as it was
    shutil.copy(shifted_warehouse, path)

    first = report_at(path, catalog, end, cache)
    cached = sorted(cache.rglob("*.npz"))
    assert len(cached) == len(DIRECTION_CLASSIFIER.feature_views)  # one profile per view, shared by models
    later_hour = report_at(
        path, catalog, end + timedelta(hours=5), cache
    )  # same day: same reference window, the profiles are reused
    assert sorted(cache.rglob("*.npz")) == cached
    assert later_hour.reference_end == first.reference_end == datetime(2026, 2, 22, tzinfo=UTC)
    uncached = report_at(shifted_warehouse, catalog, end)
    pd.testing.assert_frame_equal(first.stats, uncached.stats)
    # a re-materialized view changes its reference content: that view is profiled again, not read stale
    with warehouse.connect(path) as conn:
        conn.execute(
            "UPDATE features.returns__v3 SET ret_1b = ret_1b * 2 WHERE event_ts >= ? AND event_ts < ?",
            [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)],
        )
    changed = report_at(path, catalog, end, cache)
    assert len(list(cache.rglob("*.npz"))) == len(cached) + 1
    assert len(list((cache / "features.returns__v3").glob("*.npz"))) == 2
    assert not changed.stats.set_index("feature").loc["ret_1b"].equals(first.stats.set_index("feature").loc["ret_1b"])


def test_models_sharing_a_run_get_the_reports_each_would_get_alone(
    shifted_warehouse: Path, catalog: FeatureCatalog
) -> None:
    """One run's memo shares the views' windows, profiles, errors and per-column statistics between the models (the
    second model's shared columns are not compared again): each model's report is the one it gets alone."""
    policy, end = load_drift_policy_file(), SHIFT + timedelta(days=1)
    with warehouse.connect(shifted_warehouse, read_only=True) as conn:

        def report(spec: ModelSpec, memo: dict | None):
            return build_report(
                conn, spec, "1", catalog, policy, [], window_end=end, current=timedelta(days=1),
                reference=timedelta(days=30), memo=memo,
            )  # fmt: skip

        memo: dict = {}
        shared = [report(spec, memo) for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER)]
        assert any(key[0] == "stats" for key in memo)
        for spec, together in zip((DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER), shared, strict=True):
            alone = report(spec, None)
            pd.testing.assert_frame_equal(together.stats, alone.stats)
            assert (together.severity, together.rule) == (alone.severity, alone.rule)
