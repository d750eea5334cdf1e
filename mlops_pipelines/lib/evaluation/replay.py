"""Backtest replay of a model version over the catalog's scenarios, against baselines.

Predictions are made at each bar's decision time from point-in-time features (what the model would have seen
live), positions follow the signal, and the backtest engine (``lib/evaluation/backtest.py``) applies a one-bar
execution lag and transaction costs. Baselines on every scenario: buy-and-hold, a naive 24-bar momentum rule (or,
for a volatility forecaster, volatility targeting on the last 24 hours' realized volatility: persistence), and
the current production version of the same model (the champion) when there is one.

Besides the strategy's performance, every forecast (the models', and persistence's) is scored against what
happened: the information coefficient (``ic``: cross-sectional rank correlation with the forward return over the
label horizon, or with the realized forward volatility), and for volatility forecasts RMSE, MAE and QLIKE.

Every strategy metric is net of transaction costs (``cost_bps`` of catalog/scenarios.yaml). Every Sharpe comes
with its confidence interval (``sharpe_ci_low`` / ``sharpe_ci_high``: a block bootstrap over the window's bars),
and the gate reads the candidate's Sharpe excess over each baseline with the interval of the *paired*
difference (the same resampled bars for both), on the held-out window only: a scenario that overlaps the
version's training data is in sample, marked so everywhere it is shown, and never read by the gate.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import metrics as m
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.metrics import cross_sectional_ic, volatility_forecast_metrics
from mlops_pipelines.lib.core.plots import figure, png_bytes
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.evaluation import backtest
from mlops_pipelines.lib.evaluation.scenarios import HOLDOUT, ScenarioCatalog
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.training.datasets import load_training_set
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.lib.training.training import PERSISTENCE_FEATURE

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
    equity: pd.DataFrame | None  # time x strategy, net of costs
    horizon: int = 1  # bars a forecast looks ahead: the shortest bootstrap block
    periods_per_year: float = 8760.0  # the bar clock's, which annualizes every Sharpe of the scenario

    def returns(self) -> pd.DataFrame | None:
        """Each strategy's portfolio return per bar, net of costs (from the equity curves, which start at 1)."""
        if self.equity is None:
            return None
        return self.equity / self.equity.shift(1).fillna(1.0) - 1.0

    @property
    def label(self) -> str:
        """The scenario's name as shown: an in-sample window says so."""
        return f"{self.scenario} (IN SAMPLE)" if self.in_sample else self.scenario


MOMENTUM_LOOKBACK = 24  # bars: the naive directional baseline goes with the sign of the last 24 bars' return


def bars_between(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, bar: timedelta) -> pd.DataFrame:
    """Bars from the momentum lookback (and one more) before ``start`` to ``end``; ``bar``: the bar interval."""
    return market_bars.closes(conn, start - (MOMENTUM_LOOKBACK + 1) * bar, end)


def decision_features(
    conn: duckdb.DuckDBPyConnection, spec: ModelSpec, catalog: FeatureCatalog, bars: pd.DataFrame
) -> pd.DataFrame:
    """Point-in-time features at every bar's decision time (bar close + the spec's decision delay)."""
    entities = pd.DataFrame(
        {
            "symbol": bars["symbol"],
            ENTITY_TIME: bars["timestamp"]
            + pd.Timedelta(catalog.bar_clock.interval)
            + pd.Timedelta(minutes=spec.decision_delay_minutes),
            "bar": bars["timestamp"],
        }
    )
    return get_historical_features(conn, entities, [catalog.views[v] for v in spec.feature_views])


def _matrix(frame: pd.DataFrame, values: np.ndarray | pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"bar": frame["bar"], "symbol": frame["symbol"], "v": np.asarray(values)}).pivot(
        index="bar", columns="symbol", values="v"
    )


def strategy_positions(spec: ModelSpec, signal: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """A probability of an up move -> long / short; a volatility forecast -> long, sized to the target volatility."""
    if spec.task == "classification":
        return backtest.positions_from_signal(signal, backtest.PositionConfig(mode="probability"))
    ones = backtest.buy_and_hold_positions(returns)
    config = backtest.PositionConfig(mode="sign", target_vol=TARGET_VOL, max_leverage=MAX_LEVERAGE)
    return backtest.positions_from_signal(ones, config, forecast_vol=signal)


def forecast_truth(spec: ModelSpec, returns: pd.DataFrame, periods_per_year: float) -> pd.DataFrame:
    """What a forecast made at each bar's close is scored against: the forward return over the label horizon
    (direction), or the realized volatility of the next ``horizon`` bars (volatility), annualized as the label."""
    if spec.task == "classification":
        return backtest.forward_returns(returns, spec.label.horizon_bars)
    return backtest.realized_forward_vol(returns, spec.label.horizon_bars, periods_per_year)


def forecast_metrics(spec: ModelSpec, signal: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """``ic`` for every forecast; RMSE, MAE and QLIKE for volatility forecasts."""
    out = {"ic": cross_sectional_ic(signal, truth)}
    if spec.task == "regression":
        scores = volatility_forecast_metrics(signal.to_numpy(), truth.reindex_like(signal).to_numpy())
        out.update({k: v for k, v in scores.items() if k != "n"})
    return out


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
    bars = bars_between(conn, start, end, catalog.bar_clock.interval)
    if bars.empty:
        return None
    closes = bars.pivot(index="timestamp", columns="symbol", values="close")
    returns = backtest.bar_returns_from_bars(bars)
    frame = decision_features(conn, spec, catalog, bars)

    def aligned(values: np.ndarray | pd.Series) -> pd.DataFrame:
        return _matrix(frame, values).reindex(index=returns.index, columns=returns.columns)

    signals = {name: aligned(np.asarray(booster.predict(frame[features]))) for name, booster in models.items()}
    positions = {name: strategy_positions(spec, signal, returns) for name, signal in signals.items()}
    positions[BUY_AND_HOLD] = backtest.buy_and_hold_positions(returns)
    if spec.task == "classification":
        positions[MOMENTUM] = backtest.momentum_positions(closes, lookback=MOMENTUM_LOOKBACK)
    elif PERSISTENCE_FEATURE in frame:
        signals[PERSISTENCE] = aligned(frame[PERSISTENCE_FEATURE])
        positions[PERSISTENCE] = strategy_positions(spec, signals[PERSISTENCE], returns)
    in_window = returns.index >= pd.Timestamp(start)
    periods = catalog.bar_clock.periods_per_year
    truth = forecast_truth(spec, returns, periods)[in_window]
    metrics, equity = {}, {}
    for name, held in positions.items():
        result = backtest.run_backtest(held[in_window], returns[in_window], cost_bps=cost_bps)
        metrics[name] = backtest.performance_metrics(result, periods)
        metrics[name].update(sharpe_interval(result.portfolio.to_numpy(), spec.label.horizon_bars, periods))
        if name in signals:
            metrics[name].update(forecast_metrics(spec, signals[name][in_window], truth))
        equity[name] = result.equity
    return ScenarioResult(
        scenario=scenario,
        start=start,
        end=end,
        in_sample=train_end is not None and start < train_end,
        metrics=metrics,
        equity=pd.DataFrame(equity),
        horizon=spec.label.horizon_bars,
        periods_per_year=periods,
    )


def sharpe_interval(portfolio: np.ndarray, horizon: int, periods: float) -> dict[str, float]:
    """The Sharpe ratio's confidence interval: a block bootstrap over bars (blocks at least ``horizon`` long)."""
    low, high = m.block_bootstrap_interval(
        lambda rows: m.sharpe(portfolio[rows], periods), np.arange(len(portfolio)), min_block=horizon
    )
    return {"sharpe_ci_low": low, "sharpe_ci_high": high}


def sharpe_excess(result: ScenarioResult, baseline: str) -> dict[str, float]:
    """The candidate's Sharpe minus ``baseline``'s on the same bars, and the interval of that paired difference
    (both resampled on the same blocks of bars); only the point value without the equity curves."""
    name = f"sharpe_excess_vs_{baseline}"
    out = {name: result.metrics[CANDIDATE]["sharpe"] - result.metrics[baseline]["sharpe"]}
    returns = result.returns()
    if returns is None:
        return out
    candidate, other = returns[CANDIDATE].to_numpy(), returns[baseline].to_numpy()
    periods = result.periods_per_year
    low, high = m.block_bootstrap_interval(
        lambda rows: m.sharpe(candidate[rows], periods) - m.sharpe(other[rows], periods),
        np.arange(len(candidate)),
        min_block=result.horizon,
    )
    return {**out, f"{name}_ci_low": low, f"{name}_ci_high": high}


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
    """What the promotion gate reads from the holdout replay (never from an in-sample scenario), all after costs:
    the candidate's ``sharpe`` (with ``sharpe_ci_low/high``) and ``max_drawdown``, its Sharpe excess over
    buy-and-hold, over the naive baseline (``baseline``: 24-bar momentum, or persistence volatility targeting) and
    over the champion, each with the interval of the paired difference, the drawdown excess over the champion
    (0 without one), and ``holdout_bars``."""
    holdout = next((r for r in results if r.scenario == HOLDOUT and not r.in_sample), None)
    if holdout is None:
        return {}
    candidate = holdout.metrics[CANDIDATE]
    out = {
        "sharpe": candidate["sharpe"],
        **{k: candidate[k] for k in ("sharpe_ci_low", "sharpe_ci_high") if k in candidate},
        "max_drawdown": candidate["max_drawdown"],
        **sharpe_excess(holdout, BUY_AND_HOLD),
        "drawdown_excess_vs_champion": 0.0,
    }
    naive = next((b for b in (MOMENTUM, PERSISTENCE) if b in holdout.metrics), None)
    if naive is not None:
        out.update({k.replace(naive, "baseline"): v for k, v in sharpe_excess(holdout, naive).items()})
    if CHAMPION in holdout.metrics:
        out.update(sharpe_excess(holdout, CHAMPION))
        out["drawdown_excess_vs_champion"] = candidate["max_drawdown"] - holdout.metrics[CHAMPION]["max_drawdown"]
    if holdout.equity is not None:
        out["holdout_bars"] = float(len(holdout.equity))
    return out


def holdout_forecast_metrics(results: list[ScenarioResult]) -> dict[str, float]:
    """The candidate's forecast scores (ic; rmse, mae, qlike) on its held-out window, those that are defined
    ({} without a holdout)."""
    holdout = next((r for r in results if r.scenario == HOLDOUT), None)
    if holdout is None:
        return {}
    candidate = holdout.metrics[CANDIDATE]
    return {k: candidate[k] for k in ("ic", "rmse", "mae", "qlike") if np.isfinite(candidate.get(k, np.nan))}


def decision_lag(spec: ModelSpec, catalog: FeatureCatalog) -> pd.Timedelta:
    """From a bar's open to the decision taken on it (the bar closes, then the spec's decision delay): a decision
    time minus this is the bar it trades."""
    return pd.Timedelta(catalog.bar_clock.interval) + pd.Timedelta(minutes=spec.decision_delay_minutes)


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
    training data are marked in-sample; windows without bars are left out."""
    data = load_training_set(conn, spec)
    test, train = data.split("test"), data.split("train")
    bar = catalog.bar_clock.interval
    delay = decision_lag(spec, catalog)
    holdout = (
        (test[ENTITY_TIME].min() - delay).to_pydatetime(),
        (test[ENTITY_TIME].max() - delay + bar).to_pydatetime(),
    )
    train_end = (train[ENTITY_TIME].max() - delay).to_pydatetime()
    last_bar = market_bars.last_bar_time(conn)
    if last_bar is None:
        raise NotFound(f"{market_bars.BARS_TABLE} is empty: nothing to replay (ingest bars first)")
    windows = {HOLDOUT: holdout, **{name: s.window(last_bar) for name, s in scenarios.scenarios.items()}}
    cost = scenarios.cost_bps
    results = [
        replay(conn, spec, catalog, name, start, end, models, features, cost_bps=cost, train_end=train_end)
        for name, (start, end) in windows.items()
    ]
    return [r for r in results if r is not None]


def store_results(
    conn: duckdb.DuckDBPyConnection, model: str, version: str, results: list[ScenarioResult]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Replace the version's rows in both evaluation tables, in one transaction; returns what was written."""
    frame, gate = results_frame(results, model, version), gate_metrics(results)
    gate_rows = pd.DataFrame({"model": model, "version": version, "metric": list(gate), "value": list(gate.values())})
    with warehouse.transaction(conn):
        _add_metric_columns(conn, BACKTEST_TABLE, frame)
        for table, rows in ((BACKTEST_TABLE, frame), (GATE_METRICS_TABLE, gate_rows)):
            warehouse.replace_rows(
                conn, table, rows, where="model = ? AND version = ?", params=[model, version], own_transaction=False
            )
    return frame, gate


def _add_metric_columns(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Metric columns a table written by an earlier release (or by the other task's model) does not have yet."""
    if not warehouse.table_exists(conn, table):
        return
    existing = warehouse.table_schema(conn, table)
    for column in (c for c in frame.columns if c not in existing):
        conn.execute(f"ALTER TABLE {warehouse.quote_table(table)} ADD COLUMN {warehouse.quote_ident(column)} DOUBLE")


def stored_gate_metrics(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> dict[str, float]:
    """The gate metrics of a version's holdout replay ({} before its backtest ran)."""
    if not warehouse.table_exists(conn, GATE_METRICS_TABLE):
        return {}
    rows = conn.execute(
        f"SELECT metric, value FROM {GATE_METRICS_TABLE} WHERE model = ? AND version = ?", [model, version]
    ).fetchall()
    return {str(name): float(value) for name, value in rows}


# Over the window, not annualized: a few weeks' return compounded to a year is not a number anyone should read.
STRATEGY_COLUMNS = ("sharpe", "total_return", "max_drawdown", "hit_rate", "turnover")
FORECAST_COLUMNS = {"classification": ("ic",), "regression": ("ic", "rmse", "mae", "qlike")}


def comparison_markdown(results: list[ScenarioResult], columns: tuple[str, ...] = STRATEGY_COLUMNS) -> str:
    """One row per scenario and strategy, after costs; a Sharpe with its confidence interval; a metric a strategy
    does not have (a baseline's IC) is ``nan``; an in-sample window is marked IN SAMPLE."""
    header = [f"sharpe [{m.CI_LEVEL:.0%} CI]" if c == "sharpe" else c for c in columns]
    lines = ["| scenario | strategy | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(columns)]
    for r in results:
        for strategy, values in r.metrics.items():
            cells = " | ".join(_cell(values, c) for c in columns)
            lines.append(f"| {r.label} | {strategy} | {cells} |")
    return "\n".join(lines)


def _cell(values: Mapping[str, float], column: str) -> str:
    text = f"{values.get(column, float('nan')):.3f}"
    if column == "sharpe" and "sharpe_ci_low" in values:
        text += f" [{values['sharpe_ci_low']:.2f}, {values['sharpe_ci_high']:.2f}]"
    return text


def equity_png(result: ScenarioResult, title: str) -> bytes:
    equity = result.equity if result.equity is not None else pd.DataFrame()
    fig = figure(8, 3.6)
    ax = fig.add_subplot()
    for column in equity.columns:
        ax.plot(equity.index, equity[column], label=column, linewidth=2.0 if column == CANDIDATE else 1.0)
    ax.set_title(f"{title}: {result.label} ({result.start:%Y-%m-%d} .. {result.end:%Y-%m-%d})")
    ax.set_ylabel("equity (start = 1)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


@dataclass(frozen=True)
class BacktestReport:
    table_md: str  # scenario x strategy comparison
    equity_pngs: dict[str, bytes]  # scenario -> equity curves


def log_backtest(
    tracking: Tracking, run_id: str, spec: ModelSpec, version: str, results: list[ScenarioResult], frame: pd.DataFrame
) -> BacktestReport:
    """Log the replay of ``version`` into its training run: the gate metrics under their own names (``sharpe``,
    ``sharpe_ci_low``... of the holdout, after costs); per scenario and strategy ``bt.<scenario>.<strategy>.``
    sharpe (with its interval), max_drawdown, total_return and (forecasts) ic, under ``bt_in_sample.`` for a
    window that overlaps the training data; equity curves, ``results.csv`` and ``comparison.md`` under
    ``backtest/``."""
    pngs = {r.scenario: equity_png(r, f"{spec.name} v{version}") for r in results}
    table = comparison_markdown(results, STRATEGY_COLUMNS + FORECAST_COLUMNS[spec.task])
    client = tracking.client()
    for name, value in gate_metrics(results).items():
        if np.isfinite(value):
            client.log_metric(run_id, name, float(value))
    for row in frame.to_dict("records"):
        prefix = "bt_in_sample" if row["in_sample"] else "bt"
        for metric in ("sharpe", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown", "total_return", "ic"):
            value = row.get(metric)
            if value is not None and np.isfinite(value):
                client.log_metric(run_id, f"{prefix}.{row['scenario']}.{row['strategy']}.{metric}", float(value))
    tracking.log_files(
        run_id,
        {f"equity_{k}.png": v for k, v in pngs.items()}
        | {"results.csv": frame.to_csv(index=False), "comparison.md": table},
        "backtest",
    )
    return BacktestReport(table_md=table, equity_pngs=pngs)
