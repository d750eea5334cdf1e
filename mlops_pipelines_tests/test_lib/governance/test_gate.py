"""The promotion gate judges skill with its uncertainty: a model without skill is refused, one with a real edge
passes, with the committed policy and the metrics the pipeline computes (training's held-out forecast metrics and
the holdout backtest after costs)."""

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER
from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy, load_scenario_catalog
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.evaluation import replay
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.gate import training_drift_severity
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.training import train

SPEC = DIRECTION_CLASSIFIER
# A market with a real edge: idiosyncratic returns strongly autocorrelated bar to bar (the demo's market has none,
# only news bars that continue: an edge a month of data cannot prove).
EDGE = SyntheticMarketConfig(n_symbols=12, n_sectors=3, momentum=0.7, regime_shift_at=None)


@pytest.fixture(scope="module")
def edge_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlops_pipelines.catalog.feature_views import load_catalog

    catalog = load_catalog()
    path = tmp_path_factory.mktemp("gate") / "w.duckdb"
    bars = validate_bars(generate_bars(EDGE, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)))
    with warehouse.connect(path) as conn:
        conn.register("_bars", bars.accepted)
        conn.execute("CREATE TABLE raw.market_bars AS SELECT * FROM _bars")
        conn.unregister("_bars")
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    return path


def gate_inputs(path: Path, catalog: FeatureCatalog, *, shuffled: bool) -> dict[str, Any]:
    """What the gate observes for a version trained on the market (its labels shuffled before fitting, if asked;
    the test split keeps the true ones): training's metrics, the holdout backtest's, the drift on unseen data."""
    with warehouse.connect(path) as conn:
        data = datasets.build_training_set(conn, SPEC, catalog)
        datasets.store_training_set(conn, SPEC, data, run_id="test")
        if shuffled:
            frame = data.frame.copy()
            fit = frame["split"] != "test"
            frame.loc[fit, "label"] = np.random.default_rng(3).permutation(frame.loc[fit, "label"].to_numpy())
            data = replace(data, frame=frame)
        model = train(SPEC, data)
        boosters = {replay.CANDIDATE: model.booster}
        results = replay.replay_version(conn, SPEC, catalog, load_scenario_catalog(), boosters, data.features)
        drift = training_drift_severity(
            conn, SPEC, catalog, load_drift_policy_file(), dataset_hash=None, importance=[], cutoff=data.cutoff
        )
    return {**model.metrics, **replay.gate_metrics(results), "drift_severity": drift}


def test_the_gate_refuses_a_model_without_skill_and_passes_one_with_a_real_edge(
    edge_warehouse: Path, catalog: FeatureCatalog
) -> None:
    policy = load_promotion_policy()

    def verdict(metrics: dict[str, Any]) -> tuple[bool, list[str]]:
        result = evaluate(policy, model=SPEC.name, strategy=SPEC.strategy, metrics=metrics)
        return result.passed, [c.name for c in result.checks if not c.passed]

    skilled = gate_inputs(edge_warehouse, catalog, shuffled=False)
    assert skilled["test_auc_ci_low"] > 0.5 and skilled["sharpe_excess_vs_baseline_ci_low"] > 0
    assert skilled["drift_severity"] == "INSUFFICIENT"  # trained on every bar: nothing unseen yet, allowed
    assert verdict(skilled) == (True, []), skilled

    no_skill = gate_inputs(edge_warehouse, catalog, shuffled=True)
    assert no_skill["test_auc_ci_low"] < 0.5 < no_skill["test_auc_ci_high"]  # AUC about 0.5: no skill
    passed, failed = verdict(no_skill)
    assert not passed and "min_auc_ci_low" in failed and "min_sharpe_excess_vs_baseline_ci_low" in failed, no_skill


def test_the_original_no_skill_verdict_is_refused() -> None:
    """The metrics that passed the gate before intervals were read: AUC 0.503, a point Sharpe excess over
    buy-and-hold of exactly 0.0 (which ``>= 0.0`` let through), hit rate and drawdown inside their limits. Their
    intervals straddle no skill, so the committed policy refuses them; the old point thresholds alone passed them."""
    no_skill = {
        "test_auc": 0.503,
        "test_auc_ci_low": 0.487,
        "test_auc_ci_high": 0.519,
        "hit_rate": 0.51,
        "test_rows": 5184.0,
        "sharpe": 1.9,
        "sharpe_ci_low": -4.6,
        "sharpe_ci_high": 8.1,
        "max_drawdown": 0.04,
        "sharpe_excess_vs_buy_and_hold": 0.0,
        "sharpe_excess_vs_buy_and_hold_ci_low": -9.8,
        "sharpe_excess_vs_buy_and_hold_ci_high": 9.9,
        "sharpe_excess_vs_baseline": 0.4,
        "sharpe_excess_vs_baseline_ci_low": -8.7,
        "sharpe_excess_vs_baseline_ci_high": 9.1,
        "drawdown_excess_vs_champion": 0.0,
        "drift_severity": "NORMAL",
    }
    result = evaluate(load_promotion_policy(), model=SPEC.name, strategy=SPEC.strategy, metrics=no_skill)
    failed = {c.name for c in result.checks if not c.passed}
    assert not result.passed
    assert failed == {
        "min_auc_ci_low",
        "min_sharpe_excess_vs_buy_and_hold_ci_low",
        "min_sharpe_excess_vs_baseline_ci_low",
    }
    before = PromotionPolicy.model_validate(
        {
            "defaults": {
                "min_sharpe": 0.0,
                "max_drawdown": 0.5,
                "min_hit_rate": 0.5,
                "max_drift_severity": "MODERATE",
                "min_test_rows": 500,
                "min_sharpe_excess_vs_buy_and_hold": 0.0,
                "max_drawdown_excess_vs_champion": 0.10,
            }
        }
    )  # the defaults the gate had before
    assert evaluate(before, model=SPEC.name, strategy=SPEC.strategy, metrics=no_skill).passed
