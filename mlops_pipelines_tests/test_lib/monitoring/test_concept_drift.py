"""Realized performance (concept drift): metrics against scipy, thresholds, and which decisions count."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.monitoring import prediction_log
from mlops_pipelines.lib.monitoring.concept_drift import (
    MetricRule,
    PerformancePolicy,
    assess,
    build_performance_report,
    overall,
)
from mlops_pipelines.lib.monitoring.prediction_log import decision_rows, score
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus
from mlops_pipelines.lib.training.datasets import label_sql
from mlops_pipelines.lib.training.training import quality_metrics

INSUFFICIENT = PerformanceStatus.INSUFFICIENT
POLICY = PerformancePolicy(
    min_labelled=50,
    metrics={
        "auc": MetricRule(baseline="val_auc", compare="drop", warning=0.03, critical=0.06),
        "rmse": MetricRule(baseline="val_rmse", compare="ratio", warning=1.25, critical=1.5),
    },
)


def test_metrics_match_scipy() -> None:
    rng = np.random.default_rng(3)
    score_ = rng.normal(size=2000).round(1)  # ties
    label = (score_ + rng.normal(size=2000) > 0).astype(float)
    metrics = quality_metrics("classification", label, score_)
    u = stats.mannwhitneyu(score_[label == 1], score_[label == 0]).statistic
    assert metrics["auc"] == pytest.approx(u / ((label == 1).sum() * (label == 0).sum()), abs=1e-12)
    assert metrics["hit_rate"] == pytest.approx(np.mean((score_ > 0.5) == (label > 0.5)))
    forecast, realized = rng.gamma(2, size=500), rng.gamma(2, size=500)
    metrics = quality_metrics("regression", realized, forecast)
    assert metrics["ic"] == pytest.approx(stats.spearmanr(forecast, realized).statistic, abs=1e-12)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((forecast - realized) ** 2)))


@pytest.mark.parametrize(
    ("realized", "expected"),
    [
        ({"auc": 0.55}, "OK"),  # 0.56 - 0.55 = 0.01
        ({"auc": 0.53}, "WARNING"),  # drop 0.03: the band's lower edge is inclusive
        ({"auc": 0.49}, "CRITICAL"),
        ({"rmse": 0.12}, "OK"),  # ratio 1.2
        ({"rmse": 0.13}, "WARNING"),
        ({"rmse": 0.2}, "CRITICAL"),
    ],
)
def test_levels(realized: dict[str, float], expected: str) -> None:
    table = assess(realized, {"val_auc": 0.56, "val_rmse": 0.1}, POLICY, n=100)
    assert table["status"].tolist() == [expected]
    assert overall(table["status"]) == expected


def test_too_few_labels_or_no_baseline_is_never_an_alarm() -> None:
    table = assess({"auc": 0.3, "rmse": 9.0}, {"val_auc": 0.56, "val_rmse": 0.1}, POLICY, n=49)
    assert table["status"].tolist() == [INSUFFICIENT, INSUFFICIENT] and overall(table["status"]) == INSUFFICIENT
    assert assess({"auc": 0.3}, {}, POLICY, n=100).empty  # a version without that validation metric
    worst = assess({"auc": 0.49, "rmse": 0.12}, {"val_auc": 0.56, "val_rmse": 0.1}, POLICY, n=100)
    assert overall(worst["status"]) == "CRITICAL"


def test_only_decisions_whose_label_is_known_count(feature_warehouse: Path) -> None:
    end = datetime(2026, 1, 9, 12, tzinfo=UTC)
    start = end - timedelta(hours=48)
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        for spec in (DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER):
            rows = decision_rows(conn, spec, start, end, labelled_by=end)
            h, delay = spec.label.horizon_bars, timedelta(minutes=spec.decision_delay_minutes)
            # bar t -> decision t + 1h + delay, label known when bar t + h closes: t + h + 1h <= end
            last_decision = end - timedelta(hours=h) + delay
            assert rows[ENTITY_TIME].max() == pd.Timestamp(last_decision)
            hours = int((last_decision - delay - start) / timedelta(hours=1)) + 1  # hourly decisions, both ends in
            assert len(rows) == 6 * hours and rows["label"].notna().all()
            # the bars are cut to what the window's labels need: the labels equal those over every bar
            full = conn.execute(label_sql(spec)).fetchdf()
            full = full[(full[ENTITY_TIME] >= start) & (full[ENTITY_TIME] < end) & (full["label_available_at"] <= end)]
            merged = rows.merge(full, on=["symbol", ENTITY_TIME], suffixes=("", "_full"), validate="1:1")
            assert len(merged) == len(full) == len(rows)
            np.testing.assert_allclose(merged["label"], merged["label_full"], rtol=1e-12)
            everything = decision_rows(conn, spec, start, end)
            assert len(everything) == 6 * 48 and "label" not in everything


def test_reference_subset_is_deterministic_and_scored(feature_warehouse: Path, catalog: FeatureCatalog) -> None:
    spec = DIRECTION_CLASSIFIER
    start, end = datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        first = decision_rows(conn, spec, start, end, max_rows=100)
        again = decision_rows(conn, spec, start, end, max_rows=100)
        pd.testing.assert_frame_equal(
            first.sort_values(["symbol", ENTITY_TIME]), again.sort_values(["symbol", ENTITY_TIME])
        )
        assert len(first) == 100
        features = spec.features(catalog)
        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.normal(size=(300, len(features))), columns=features)
        booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x.iloc[:, 0] > 0).astype(int)), 5)
        scored = score(conn, spec, catalog, booster, first)
    assert len(scored) == 100 and scored["prediction"].between(0, 1).all()
    expected = booster.predict(scored[features])
    np.testing.assert_allclose(scored["prediction"], expected)


def test_prediction_log_scores_each_decision_once(
    feature_warehouse: Path, catalog: FeatureCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DIRECTION_CLASSIFIER
    features = spec.features(catalog)
    x = pd.DataFrame(np.random.default_rng(1).normal(size=(300, len(features))), columns=features)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x.iloc[:, 1] > 0).astype(int)), 5)
    scored_rows: list[int] = []
    real_score = prediction_log.score

    def counting_score(*args, **kwargs):  # the real scorer, counting what it is asked to score
        out = real_score(*args, **kwargs)
        scored_rows.append(len(out))
        return out

    monkeypatch.setattr(prediction_log, "score", counting_score)
    day = datetime(2026, 1, 8, tzinfo=UTC)
    with warehouse.connect(feature_warehouse) as conn:
        first = decision_rows(conn, spec, day, day + timedelta(hours=12))
        logged = prediction_log.logged_scores(conn, spec, "1", catalog, booster, first)
        overlapping = decision_rows(conn, spec, day + timedelta(hours=6), day + timedelta(hours=18))
        again = prediction_log.logged_scores(conn, spec, "1", catalog, booster, overlapping)
        other_version = prediction_log.logged_scores(conn, spec, "2", catalog, booster, first)
        [(rows,)] = conn.execute("SELECT count(*) FROM monitoring.predictions").fetchall()
        direct = real_score(conn, spec, catalog, booster, overlapping)
    assert scored_rows == [6 * 12, 6 * 6, 6 * 12]  # the overlap is read from the log, not scored again
    assert rows == 6 * 18 + 6 * 12 and len(logged) == len(other_version) == 6 * 12
    merged = again.merge(direct, on=["symbol", ENTITY_TIME], suffixes=("", "_direct"), validate="1:1")
    np.testing.assert_allclose(merged["prediction"], merged["prediction_direct"])
    assert len(merged) == 6 * 12


def test_the_labelled_window_grows_until_it_holds_enough_decisions(
    feature_warehouse: Path, catalog: FeatureCatalog
) -> None:
    """Six symbols make six decisions an hour: a 12-hour window holds too few labelled ones, so it doubles until
    it holds ``min_labelled``; capped below that, the report is INSUFFICIENT and says which window would do."""
    spec, end = DIRECTION_CLASSIFIER, datetime(2026, 1, 9, 12, tzinfo=UTC)
    features = spec.features(catalog)
    x = pd.DataFrame(np.random.default_rng(2).normal(size=(300, len(features))), columns=features)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x.iloc[:, 0] > 0).astype(int)), 5)
    rule = {"auc": MetricRule(baseline="val_auc", compare="drop", warning=0.03, critical=0.06)}
    grow = PerformancePolicy(window_hours=12, max_window_hours=96, min_labelled=200, metrics=rule)
    assert grow.window_ladder() == [12, 24, 48, 96]
    with warehouse.connect(feature_warehouse) as conn:
        report = build_performance_report(conn, spec, "1", catalog, booster, {"val_auc": 0.5}, grow, window_end=end)
        assert report.window_start == end - timedelta(hours=48) and report.n_labelled >= 200
        assert report.status != INSUFFICIENT and "grown from 12 h to hold >= 200" in report.note
        capped = grow.model_copy(update={"max_window_hours": 24})
        short = build_performance_report(conn, spec, "1", catalog, booster, {"val_auc": 0.5}, capped, window_end=end)
    assert short.status == INSUFFICIENT and short.window_start == end - timedelta(hours=24)
    assert f"INSUFFICIENT: {short.n_labelled} labelled decisions in the longest window (24 h" in short.note
    assert "needs >= 200: a window of ~" in short.note
    with pytest.raises(ValueError, match="max_window_hours 10 must be >= window_hours 12"):
        PerformancePolicy(window_hours=12, max_window_hours=10)
