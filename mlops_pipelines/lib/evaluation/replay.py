"""Backtest replay of a model version over the catalog's scenarios, against baselines.

Predictions are made at each bar's decision time from point-in-time features (what the model would have seen
live), positions follow the signal, and the backtest engine (``lib/evaluation/backtest.py``) applies a one-bar execution
lag and transaction costs. Baselines on every scenario: buy-and-hold, a naive 24-bar momentum rule, and the
current production version of the same model (the champion) when there is one.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.plots import figure, png_bytes
from mlops_pipelines.lib.evaluation import backtest
from mlops_pipelines.lib.evaluation.scenarios import HOLDOUT, ScenarioCatalog
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.training.datasets import load_training_set
from mlops_pipelines.lib.training.model_specs import ModelSpec

CANDIDATE, CHAMPION, BUY_AND_HOLD, MOMENTUM, PERSISTENCE = (
    "candidate",
    "champion",
    "buy_and_hold",
    "momentum_24h",
    "vol_target_persistence",
)
BACKTEST_TABLE = "evaluation.backtest_results"  # one row per (version, scenario, strategy)
GATE_METRICS_TABLE = "evaluation.gate_metrics"  # what the promotion gate reads, per version
TARGET_VOL = 0.4  # annualized volatility a volatility-targeted position aims at
MAX_LEVERAGE = 3.0


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    start: datetime
    end: datetime
    in_sample: bool
    metrics: dict[str, dict[str, float]]  # strategy -> metric -> value
    equity: pd.DataFrame  # time x strategy


def bars_between(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """Bars from a day before ``start`` (momentum lookback) to ``end``."""
    return market_bars.closes(conn, start - timedelta(hours=25), end)


def decision_features(
    conn: duckdb.DuckDBPyConnection, spec: ModelSpec, catalog: FeatureCatalog, bars: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time features at every bar's decision time (bar close + the spec's decision delay)."""
    entities = pd.DataFrame(
        {
            "symbol": bars["symbol"],
            ENTITY_TIME: bars["timestamp"] + pd.Timedelta(hours=1) + pd.Timedelta(minutes=spec.decision_delay_minutes),
            "bar": bars["timestamp"],
        }
    )
    return get_historical_features(conn, entities, [catalog.views[v] for v in spec.feature_views])


def _matrix(frame: pd.DataFrame, values: np.ndarray | pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"bar": frame["bar"], "symbol": frame["symbol"], "v": np.asarray(values)}).pivot(
        index="bar", columns="symbol", values="v"
    )


def strategy_positions(
    spec: ModelSpec, features: pd.DataFrame, predictions: np.ndarray, returns: pd.DataFrame
) -> pd.DataFrame:
    signal = _matrix(features, predictions).reindex(index=returns.index, columns=returns.columns)
    if spec.task == "classification":
        return backtest.positions_from_signal(signal, backtest.PositionConfig(mode="probability"))
    ones = backtest.buy_and_hold_positions(returns)
    config = backtest.PositionConfig(mode="sign", target_vol=TARGET_VOL, max_leverage=MAX_LEVERAGE)
    return backtest.positions_from_signal(ones, config, forecast_vol=signal)


def replay(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    scenario: str,
    start: datetime,
    end: datetime,
    models: Mapping[str, lgb.Booster],
    features: list[str],
    *,
    cost_bps: float,
    train_end: datetime | None,
) -> ScenarioResult | None:
    """Every strategy on one window; None when the window has no bars."""
    bars = bars_between(conn, start, end)
    if bars.empty:
        return None
    closes = bars.pivot(index="timestamp", columns="symbol", values="close")
    returns = backtest.bar_returns_from_bars(bars)
    frame = decision_features(conn, spec, catalog, bars)
    positions = {
        name: strategy_positions(spec, frame, np.asarray(booster.predict(frame[features])), returns)
        for name, booster in models.items()
    }
    positions[BUY_AND_HOLD] = backtest.buy_and_hold_positions(returns)
    if spec.task == "classification":
        positions[MOMENTUM] = backtest.momentum_positions(closes, lookback=24)
    elif "realized_vol_24h" in frame:
        persistence = _matrix(frame, frame["realized_vol_24h"]).reindex(index=returns.index, columns=returns.columns)
        config = backtest.PositionConfig(mode="sign", target_vol=TARGET_VOL, max_leverage=MAX_LEVERAGE)
        positions[PERSISTENCE] = backtest.positions_from_signal(
            positions[BUY_AND_HOLD], config, forecast_vol=persistence
        )
    in_window = returns.index >= pd.Timestamp(start)
    metrics, equity = {}, {}
    for name, held in positions.items():
        result = backtest.run_backtest(held[in_window], returns[in_window], cost_bps=cost_bps)
        metrics[name] = backtest.performance_metrics(result)
        equity[name] = result.equity
    return ScenarioResult(
        scenario=scenario,
        start=start,
        end=end,
        in_sample=train_end is not None and start < train_end,
        metrics=metrics,
        equity=pd.DataFrame(equity),
    )


def replay_all(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    scenarios: ScenarioCatalog,
    models: Mapping[str, lgb.Booster],
    features: list[str],
    *,
    holdout: tuple[datetime, datetime],
    train_end: datetime,
) -> list[ScenarioResult]:
    last_bar = market_bars.last_bar_time(conn)
    if last_bar is None:
        raise LookupError("raw.market_bars is empty: nothing to replay")
    windows = {HOLDOUT: holdout, **{name: s.window(last_bar) for name, s in scenarios.scenarios.items()}}
    results = []
    for name, (start, end) in windows.items():
        result = replay(
            conn, spec, catalog, name, start, end, models, features, cost_bps=scenarios.cost_bps, train_end=train_end
        )
        if result is not None:
            results.append(result)
    return results


def results_frame(results: list[ScenarioResult], model: str, version: str) -> pd.DataFrame:
    rows = [
        {
            "model": model,
            "version": version,
            "scenario": r.scenario,
            "strategy": strategy,
            "window_start": r.start,
            "window_end": r.end,
            "in_sample": r.in_sample,
            **values,
        }
        for r in results
        for strategy, values in r.metrics.items()
    ]
    return pd.DataFrame(rows)


def gate_metrics(results: list[ScenarioResult]) -> dict[str, float]:
    """What the promotion gate reads from the holdout replay."""
    holdout = next((r for r in results if r.scenario == HOLDOUT), None)
    if holdout is None:
        return {}
    candidate = holdout.metrics[CANDIDATE]
    out = {
        "backtest_sharpe": candidate["sharpe"],
        "backtest_max_drawdown": candidate["max_drawdown"],
        "sharpe_excess_vs_buy_and_hold": candidate["sharpe"] - holdout.metrics[BUY_AND_HOLD]["sharpe"],
        "drawdown_excess_vs_champion": 0.0,
    }
    if CHAMPION in holdout.metrics:
        out["drawdown_excess_vs_champion"] = candidate["max_drawdown"] - holdout.metrics[CHAMPION]["max_drawdown"]
    return out


def replay_version(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    scenarios: ScenarioCatalog,
    models: Mapping[str, lgb.Booster],
    features: list[str],
) -> list[ScenarioResult]:
    """Replay a version (``models[CANDIDATE]``, and the champion when given) over every scenario and over its own
    held-out window: the test split's decisions, shifted back to the bars they trade. Windows that overlap its
    training data are marked in-sample."""
    data = load_training_set(conn, spec)
    test, train = data.split("test"), data.split("train")
    delay = pd.Timedelta(hours=1) + pd.Timedelta(minutes=spec.decision_delay_minutes)
    holdout = (
        (test[ENTITY_TIME].min() - delay).to_pydatetime(),
        (test[ENTITY_TIME].max() - delay + timedelta(hours=1)).to_pydatetime(),
    )
    train_end = (train[ENTITY_TIME].max() - delay).to_pydatetime()
    return replay_all(conn, spec, catalog, scenarios, models, features, holdout=holdout, train_end=train_end)


def store_results(
    conn: duckdb.DuckDBPyConnection, model: str, version: str, results: list[ScenarioResult]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Replace the version's rows in both evaluation tables, in one transaction; returns what was written."""
    frame, gate = results_frame(results, model, version), gate_metrics(results)
    gate_rows = pd.DataFrame({"model": model, "version": version, "metric": list(gate), "value": list(gate.values())})
    with warehouse.transaction(conn):
        for table, rows in ((BACKTEST_TABLE, frame), (GATE_METRICS_TABLE, gate_rows)):
            warehouse.replace_rows(
                conn, table, rows, where="model = ? AND version = ?", params=[model, version], own_transaction=False
            )
    return frame, gate


def stored_gate_metrics(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> dict[str, float]:
    """The gate metrics of a version's holdout replay ({} before its backtest ran)."""
    if not warehouse.table_exists(conn, GATE_METRICS_TABLE):
        return {}
    rows = conn.execute(
        f"SELECT metric, value FROM {GATE_METRICS_TABLE} WHERE model = ? AND version = ?", [model, version]
    ).fetchall()
    return {str(name): float(value) for name, value in rows}


def comparison_markdown(
    results: list[ScenarioResult],
    columns: tuple[str, ...] = ("sharpe", "annual_return", "max_drawdown", "hit_rate", "turnover"),
) -> str:
    lines = ["| scenario | strategy | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in results:
        label = f"{r.scenario}{' (in sample)' if r.in_sample else ''}"
        for strategy, values in r.metrics.items():
            cells = " | ".join(f"{values.get(c, float('nan')):.3f}" for c in columns)
            lines.append(f"| {label} | {strategy} | {cells} |")
    return "\n".join(lines)


def equity_png(result: ScenarioResult, title: str) -> bytes:
    fig = figure(8, 3.6)
    ax = fig.add_subplot()
    for column in result.equity.columns:
        ax.plot(result.equity.index, result.equity[column], label=column, linewidth=2.0 if column == CANDIDATE else 1.0)
    ax.set_title(f"{title}: {result.scenario} ({result.start:%Y-%m-%d} .. {result.end:%Y-%m-%d})")
    ax.set_ylabel("equity (start = 1)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig, dpi=90)
