"""Scenario replay against baselines, SHAP against shap.TreeExplainer, scenarios file, compliance report."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER, VOLATILITY_FORECASTER
from mlops_pipelines.catalog.policies import load_scenario_catalog
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.config_files import PolicyError
from mlops_pipelines.lib.evaluation import backtest, explanations, replay
from mlops_pipelines.lib.evaluation.scenarios import HOLDOUT, ScenarioCatalog, load_scenarios
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.training import train


@pytest.fixture
def trained(feature_warehouse: Path, catalog: FeatureCatalog):
    with warehouse.connect(feature_warehouse) as conn:
        data = datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog)
    return data, train(DIRECTION_CLASSIFIER, data)


def test_native_contributions_match_shap_tree_explainer(trained) -> None:
    data, model = trained
    sample = explanations.deterministic_sample(data.split("test"), 300)
    result = explanations.explain(model.booster, sample, data.features)
    reference = explanations.shap_reference(model.booster, sample, data.features)
    assert np.abs(result.contributions.to_numpy() - reference).max() < 1e-6
    raw = model.booster.predict(sample[data.features], raw_score=True, num_iteration=model.booster.best_iteration)
    np.testing.assert_allclose(result.prediction.to_numpy(), raw, atol=1e-9)  # additivity
    assert (
        list(result.global_importance.index)[:1]
        and result.global_importance.iloc[0] >= result.global_importance.iloc[-1]
    )
    local = result.local(top_rows=3, top_features=2)
    assert len(local) == 3 and all(len(row["contributions"]) == 2 for row in local)
    assert local[0]["raw_prediction"] == pytest.approx(result.prediction.max())
    assert explanations.deterministic_sample(data.split("test"), 300).index.equals(sample.index)
    png = explanations.summary_plot_png(result, "test")
    assert png.startswith(b"\x89PNG")


def test_replay_against_baselines(trained, feature_warehouse: Path, catalog: FeatureCatalog) -> None:
    data, model = trained
    start, end = datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    with warehouse.connect(feature_warehouse, read_only=True) as conn:
        result = replay.replay(
            conn,
            DIRECTION_CLASSIFIER,
            catalog,
            "window",
            start,
            end,
            {replay.CANDIDATE: model.booster},
            data.features,
            cost_bps=2.0,
            train_end=datetime(2026, 1, 7, tzinfo=UTC),
        )
        bars = conn.execute('SELECT symbol, "timestamp", close FROM raw.market_bars').fetchdf()
    assert result is not None and result.in_sample
    assert set(result.metrics) == {replay.CANDIDATE, replay.BUY_AND_HOLD, replay.MOMENTUM}
    # buy-and-hold, recomputed independently from the raw bars over the same window
    returns = backtest.bar_returns_from_bars(bars)
    returns = returns[(returns.index >= start) & (returns.index < end)]
    expected = backtest.run_backtest(backtest.buy_and_hold_positions(returns), returns, cost_bps=2.0)
    assert result.metrics[replay.BUY_AND_HOLD]["sharpe"] == pytest.approx(
        backtest.performance_metrics(expected, 8760)["sharpe"], rel=1e-9
    )
    assert len(result.equity) == len(returns)
    assert result.metrics[replay.CANDIDATE]["turnover"] > 0  # the model's signal moves positions
    # the forecast itself is scored (README: "plus IC"); a baseline without a forecast has no IC
    assert -1.0 <= result.metrics[replay.CANDIDATE]["ic"] <= 1.0
    assert "ic" not in result.metrics[replay.BUY_AND_HOLD] and "ic" not in result.metrics[replay.MOMENTUM]
    assert "| ic |" in replay.comparison_markdown([result], (*replay.STRATEGY_COLUMNS, "ic"))


def test_volatility_forecasts_are_scored_with_rmse_mae_qlike_and_ic(feature_warehouse: Path, catalog) -> None:
    """The volatility forecaster and the persistence baseline are scored against the realized forward volatility,
    which is the label's own definition (checked against the label SQL)."""
    with warehouse.connect(feature_warehouse) as conn:
        data = datasets.build_training_set(conn, VOLATILITY_FORECASTER, catalog)
        labels = conn.execute(datasets.label_sql(VOLATILITY_FORECASTER)).fetchdf()
        bars = conn.execute('SELECT symbol, "timestamp", close FROM raw.market_bars').fetchdf()
        model = train(VOLATILITY_FORECASTER, data)
        start, end = datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
        result = replay.replay(
            conn,
            VOLATILITY_FORECASTER,
            catalog,
            "window",
            start,
            end,
            {replay.CANDIDATE: model.booster},
            data.features,
            cost_bps=2.0,
            train_end=None,
        )
    realized = backtest.realized_forward_vol(backtest.bar_returns_from_bars(bars), 24, 8760)
    delay = pd.Timedelta(hours=1) + pd.Timedelta(minutes=VOLATILITY_FORECASTER.decision_delay_minutes)
    label = labels.assign(bar=labels["event_timestamp"] - delay).pivot(index="bar", columns="symbol", values="label")
    both = realized.reindex_like(label)
    assert label.notna().sum().sum() > 100
    np.testing.assert_allclose(both.to_numpy()[label.notna()], label.to_numpy()[label.notna()], rtol=1e-9)
    assert result is not None
    for strategy in (replay.CANDIDATE, replay.PERSISTENCE):
        scores = result.metrics[strategy]
        assert {"ic", "rmse", "mae", "qlike"} <= set(scores)
        assert scores["rmse"] >= scores["mae"] > 0 and scores["qlike"] > 0
    assert "ic" not in result.metrics[replay.BUY_AND_HOLD]


def test_stored_results_gain_the_metric_columns_an_older_table_lacks(tmp_path: Path) -> None:
    """A warehouse whose evaluation.backtest_results was written before the forecast scores existed takes the new
    rows (the new columns are added); the old rows keep NULL there."""
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    old = replay.ScenarioResult("calm", *window, False, {replay.CANDIDATE: {"sharpe": 1.0, "max_drawdown": 0.1}}, None)  # type: ignore[arg-type]
    new_metrics = {"sharpe": 2.0, "max_drawdown": 0.1, "ic": 0.05, "qlike": 0.2}
    new = replay.ScenarioResult("calm", *window, False, {replay.CANDIDATE: new_metrics}, None)  # type: ignore[arg-type]
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        replay.store_results(conn, "m", "1", [old])
        replay.store_results(conn, "m", "2", [new])
        rows = conn.execute(
            f"SELECT version, sharpe, ic, qlike FROM {replay.BACKTEST_TABLE} ORDER BY version"
        ).fetchall()
    assert rows == [("1", 1.0, None, None), ("2", 2.0, 0.05, 0.2)]


def test_gate_metrics_compare_with_buy_and_hold_and_champion() -> None:
    metrics = {
        name: {"sharpe": s, "max_drawdown": d}
        for name, s, d in (
            (replay.CANDIDATE, 1.5, 0.10),
            (replay.BUY_AND_HOLD, 0.5, 0.20),
            (replay.CHAMPION, 1.0, 0.04),
        )
    }
    holdout = replay.ScenarioResult(
        HOLDOUT, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), False, metrics, equity=None
    )  # type: ignore[arg-type]
    gate = replay.gate_metrics([holdout])
    assert gate["sharpe_excess_vs_buy_and_hold"] == pytest.approx(1.0)
    assert gate["drawdown_excess_vs_champion"] == pytest.approx(0.06)
    policy = PromotionPolicy.model_validate(
        {"defaults": {"min_sharpe_excess_vs_buy_and_hold": 0.2, "max_drawdown_excess_vs_champion": 0.05}}
    )
    result = evaluate(policy, model="m", strategy="s", metrics=gate)
    assert [c.name for c in result.checks if not c.passed] == ["max_drawdown_excess_vs_champion"]


def test_committed_scenarios_and_validation(tmp_path: Path) -> None:
    catalog = load_scenario_catalog()
    assert {"calm", "regime_shift", "high_volatility", "latest_quarter"} <= set(catalog.scenarios)
    last_bar = datetime(2026, 3, 1, 23, tzinfo=UTC)
    start, end = catalog.scenarios["latest_quarter"].window(last_bar)
    assert end == datetime(2026, 3, 2, tzinfo=UTC) and (end - start).days == 90
    for content, message in (
        ("cost_bps: 1\nscenarios:\n  a: {description: x, start: 2026-02-01, end: 2026-01-01}\n", "is not before"),
        ("cost_bps: 1\nscenarios:\n  a: {description: x, start: 2026-01-01}\n", "either start and end"),
        ("cost_bps: 1\nscenarios:\n  holdout: {description: x, last_days: 3}\n", "reserved"),
        ("cost_bps: -1\nscenarios: {}\n", "key 'cost_bps'"),
    ):
        path = tmp_path / "scenarios.yaml"
        path.write_text(content)
        with pytest.raises(PolicyError, match=message):
            load_scenarios(path)
    assert isinstance(catalog, ScenarioCatalog)


def test_compliance_report_has_every_section() -> None:
    policy = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 0.5, "min_hit_rate": 0.6}})
    observed = {"sharpe": 0.9, "sharpe_ci_low": -2.25, "sharpe_ci_high": 4.5, "hit_rate": 0.55}
    result = evaluate(policy, model="m", strategy="s", metrics=observed)
    inputs = compliance.ReportInputs(
        model="m",
        version="3",
        model_card_md="# Model card: m\nintended use",
        manifest={
            "dataset_hash": "d" * 64,
            "feature_graph_hash": "f" * 64,
            "git_commit": "abc",
            "mlflow_run_id": "r1",
            "dagster_run_id": "x",
            "artifact_sha256": "s" * 64,
        },
        feature_views={"returns": 1},
        backtest_md="| scenario | strategy | sharpe |\n|---|---|---|\n| holdout | candidate | 1.2 |",
        equity_pngs={"holdout": b"\x89PNG..."},
        shap_md="| feature | mean abs SHAP |\n|---|---|\n| ret_1b | 0.1 |",
        shap_png=b"\x89PNG...",
        shap_error=None,
        drift_status="NORMAL",
        policy=result,
        review_status="PENDING_REVIEW",
    )
    page = compliance.render_html(inputs)
    for text in (
        "Lineage",
        "d" * 64,
        "returns@1",
        "min_hit_rate",
        "0.5500",
        "FAIL",
        "holdout",
        "ret_1b",
        "data:image/png;base64,",
        "PENDING_REVIEW",
        "intended use",
        result.policy_hash,
    ):
        assert text in page, text
    markdown = compliance.render_markdown(inputs)
    assert "## Promotion policy" in markdown and "Overall: **FAILED**" in markdown
    # a headline metric is shown with its interval, in both renderings
    assert "| sharpe | 0.9000 | [-2.2500, 4.5000] |" in markdown and "[-2.2500, 4.5000]" in page
