"""The backtest engine: hand-computed cases, identities, and metrics against naive loops."""

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core import metrics as m
from mlops_pipelines.lib.evaluation.backtest import (
    PositionConfig,
    bar_returns_from_bars,
    buy_and_hold_positions,
    forward_returns,
    momentum_positions,
    performance_metrics,
    positions_from_signal,
    run_backtest,
    to_matrix,
)
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars

HOURS = pd.date_range("2026-01-01", periods=2000, freq="h", tz="UTC")


def frame(values: list[list[float]] | np.ndarray, columns: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    data = np.asarray(values, dtype=float)
    return pd.DataFrame(data, index=HOURS[: len(data)], columns=list(columns))


def random_returns(seed: int, n_bars: int = 300, n_symbols: int = 5, scale: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return frame(rng.normal(0.0002, scale, (n_bars, n_symbols)), tuple(f"S{i}" for i in range(n_symbols)))


def naive_max_drawdown(returns: list[float]) -> float:
    equity, peak, worst = 1.0, 1.0, 0.0
    for r in returns:
        equity *= 1.0 + r
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    return worst


def naive_sharpe(returns: list[float], periods: float) -> float:
    n = len(returns)
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    return mean / math.sqrt(var) * math.sqrt(periods)


def naive_sortino(returns: list[float], periods: float) -> float:
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return mean / downside * math.sqrt(periods)


# --- run_backtest: identities and hand cases --------------------------------------------------------------------


def test_constant_long_without_costs_is_buy_and_hold_shifted_by_the_lag() -> None:
    returns = random_returns(1)
    for lag in (0, 1, 3):
        result = run_backtest(buy_and_hold_positions(returns), returns, cost_bps=0.0, execution_lag=lag)
        expected = returns.mean(axis=1).to_numpy()
        expected[:lag] = 0.0  # the first `lag` bars hold nothing yet
        np.testing.assert_allclose(result.portfolio.to_numpy(), expected, rtol=1e-13, atol=1e-16)
        assert result.portfolio.iloc[lag] != 0.0
        np.testing.assert_allclose(result.equity.to_numpy(), np.cumprod(1.0 + expected), rtol=1e-12)
        assert result.turnover == pytest.approx(1.0 / len(returns))  # entered once, in every symbol


def test_zero_position_earns_nothing_and_has_no_risk() -> None:
    returns = random_returns(2)
    zero = pd.DataFrame(0.0, index=returns.index, columns=returns.columns)
    result = run_backtest(zero, returns, cost_bps=25.0)
    assert (result.portfolio == 0.0).all()
    metrics = performance_metrics(result, 8760)
    assert metrics["annual_return"] == 0.0
    assert metrics["annual_volatility"] == 0.0
    assert metrics["max_drawdown"] == 0.0
    assert metrics["sharpe"] == 0.0 and metrics["calmar"] == 0.0 and metrics["turnover"] == 0.0
    assert math.isnan(metrics["hit_rate"])


def test_two_bar_hand_case_with_costs_and_lag() -> None:
    # One symbol. Decided: +1 at bar 0, -1 at bar 1, -1 at bar 2. Returns: bar 0 +1%, bar 1 +2%, bar 2 -3%.
    positions = frame([[1.0], [-1.0], [-1.0]], ("A",))
    returns = frame([[0.01], [0.02], [-0.03]], ("A",))
    result = run_backtest(positions, returns, cost_bps=10.0, execution_lag=1)
    # Held: 0, +1, -1. Bar 1: enter +1 (10 bps) and earn +2%. Bar 2: flip to -1 (20 bps) and earn +3%.
    np.testing.assert_allclose(result.held["A"].to_numpy(), [0.0, 1.0, -1.0])
    np.testing.assert_allclose(result.portfolio.to_numpy(), [0.0, 0.02 - 0.001, 0.03 - 0.002], rtol=1e-12)
    np.testing.assert_allclose(result.costs.to_numpy(), [0.0, 0.001, 0.002], rtol=1e-12)
    assert result.turnover == pytest.approx((0 + 1 + 2) / 3)
    # Without a lag the same decisions earn the same bars' returns: +1% - 10 bps, -2% - 20 bps, +3%.
    no_lag = run_backtest(positions, returns, cost_bps=10.0, execution_lag=0)
    np.testing.assert_allclose(no_lag.portfolio.to_numpy(), [0.01 - 0.001, -0.02 - 0.002, 0.03], rtol=1e-12)
    # Two symbols: the portfolio is the mean of the two net returns; costs scale with the change.
    two = run_backtest(
        frame([[0.5, -2.0], [0.5, 1.0]]), frame([[0.01, 0.01], [0.04, -0.02]]), cost_bps=10.0, execution_lag=1
    )
    expected_bar1 = ((0.5 * 0.04 - 0.0005) + (-2.0 * -0.02 - 0.002)) / 2
    np.testing.assert_allclose(two.portfolio.to_numpy(), [0.0, expected_bar1], rtol=1e-12)


def test_costs_are_the_gap_between_gross_and_net() -> None:
    returns = random_returns(3)
    positions = positions_from_signal(random_returns(4))
    gross = run_backtest(positions, returns, cost_bps=0.0)
    net = run_backtest(positions, returns, cost_bps=7.5)
    np.testing.assert_allclose(gross.portfolio - net.portfolio, net.costs, rtol=1e-10, atol=1e-15)
    # Costs per bar average to cost * turnover (both are means over the symbols trading that bar).
    assert net.costs.mean() == pytest.approx(7.5e-4 * net.turnover, rel=1e-12)
    assert net.turnover > 0.5  # random signs flip about half the time, |flip| = 2


def test_lag_prevents_look_ahead() -> None:
    returns = random_returns(5, n_bars=2000)
    same_bar = returns  # a "signal" equal to the bar's own return: only knowable after the bar
    foresight = run_backtest(positions_from_signal(same_bar), returns, cost_bps=0.0, execution_lag=0)
    honest = run_backtest(positions_from_signal(same_bar), returns, cost_bps=0.0, execution_lag=1)
    # Lag 0 earns |r| on every bar; lag 1 earns sign(r_{t-1}) * r_t, i.e. nothing special on iid returns.
    np.testing.assert_allclose(foresight.portfolio, returns.abs().mean(axis=1), rtol=1e-12)
    r = returns.to_numpy()
    expected = np.concatenate([[0.0], (np.sign(r[:-1]) * r[1:]).mean(axis=1)])
    np.testing.assert_allclose(honest.portfolio.to_numpy(), expected, rtol=1e-12, atol=1e-17)
    assert foresight.portfolio.mean() > 0.003
    assert abs(honest.portfolio.mean()) < 0.0005
    assert performance_metrics(foresight, 8760)["hit_rate"] == 1.0
    assert 0.4 < performance_metrics(honest, 8760)["hit_rate"] < 0.6


def test_nan_returns_contribute_nothing_and_carry_the_position() -> None:
    returns = frame(
        [[0.01, 0.02, 0.03], [np.nan, 0.01, 0.02], [0.04, np.nan, -0.01], [0.01, 0.02, 0.03]], ("A", "B", "C")
    )
    positions = frame([[1.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]], ("A", "B", "C"))
    result = run_backtest(positions, returns, cost_bps=10.0, execution_lag=0)
    # Bar 0: everyone enters (10 bps each). Bar 1: A has no return: excluded, and its flip to -1 waits for bar 2.
    # Bar 2: B has no return; A flips (20 bps) and earns -4%.
    expected = [
        (0.01 + 0.02 + 0.03) / 3 - 0.001,
        (0.01 + 0.02) / 2,
        (-0.04 - 0.002 - 0.01) / 2,
        (-0.01 + 0.02 + 0.03) / 3,
    ]
    np.testing.assert_allclose(result.portfolio.to_numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(result.per_symbol.isna().to_numpy(), returns.isna().to_numpy())
    np.testing.assert_allclose(result.held["A"].to_numpy(), [1.0, 1.0, -1.0, -1.0])
    # A bar where no symbol has a return (the first bar of real data) earns exactly 0, not NaN.
    none = run_backtest(positions.iloc[:2], frame([[np.nan] * 3, [0.01, 0.02, 0.03]], ("A", "B", "C")), 0.0, 1)
    np.testing.assert_allclose(none.portfolio.to_numpy(), [0.0, (0.01 + 0.02 + 0.03) / 3])
    # Missing positions are flat; positions are aligned to the returns' labels.
    partial = run_backtest(positions[["A"]], returns, cost_bps=0.0, execution_lag=0)
    assert (partial.held[["B", "C"]] == 0.0).all().all()


def naive_backtest(positions: pd.DataFrame, returns: pd.DataFrame, cost_bps: float, lag: int) -> pd.Series:
    """One symbol at a time, bar by bar: the documented rules written as a plain loop."""
    total = np.zeros(len(returns))
    count = np.zeros(len(returns))
    for symbol in returns.columns:
        r = returns[symbol].to_numpy()
        p = positions[symbol].to_numpy()
        held = 0.0
        for t in range(len(r)):
            if not np.isfinite(r[t]):
                continue  # no return: earns nothing, the position carries over
            new = p[t - lag] if t >= lag and np.isfinite(p[t - lag]) else 0.0
            total[t] += new * r[t] - cost_bps / 1e4 * abs(new - held)
            count[t] += 1
            held = new
    return pd.Series(np.where(count > 0, total / np.maximum(count, 1), 0.0), index=returns.index)


@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("lag", [0, 1, 2])
def test_run_backtest_matches_a_naive_loop(gaps: bool, lag: int) -> None:
    rng = np.random.default_rng(20 + lag)
    returns = random_returns(30 + lag, n_bars=120, n_symbols=6)
    returns.iloc[0] = np.nan  # the first bar has no return, as from bar_returns_from_bars
    returns.iloc[:15, 2] = np.nan  # listed later
    positions = frame(rng.choice([-1.5, -1.0, 0.0, 0.5, 1.0, np.nan], size=returns.shape), tuple(returns.columns))
    if gaps:
        returns = returns.mask(rng.random(returns.shape) < 0.1)
        returns.iloc[100:, 4] = np.nan  # stops trading
    result = run_backtest(positions, returns, cost_bps=5.0, execution_lag=lag)
    np.testing.assert_allclose(result.portfolio, naive_backtest(positions, returns, 5.0, lag), rtol=1e-12, atol=1e-15)
    if gaps:  # after its last return a symbol costs nothing and holds what it held
        assert result.per_symbol.iloc[100:, 4].isna().all()
        assert (result.held.iloc[100:, 4] == result.held.iloc[99, 4]).all()


def test_to_matrix_is_pivot() -> None:
    rng = np.random.default_rng(13)
    long = pd.DataFrame(
        {"timestamp": np.repeat(HOURS[:50], 4), "symbol": np.tile(["D", "B", "C", "A"], 50), "x": rng.normal(size=200)}
    )
    long = long.drop(index=[3, 17, 60]).sample(frac=1.0, random_state=1)  # missing rows, any order
    expected = long.pivot(index="timestamp", columns="symbol", values="x").sort_index()
    pd.testing.assert_frame_equal(to_matrix(long, "x"), expected)
    with pytest.raises(ValueError, match="duplicate"):
        to_matrix(pd.concat([long, long.iloc[:1]]), "x")


def test_run_backtest_rejects_bad_arguments() -> None:
    returns = random_returns(6, n_bars=10)
    with pytest.raises(ValueError, match="execution_lag"):
        run_backtest(returns, returns, cost_bps=0.0, execution_lag=-1)
    with pytest.raises(ValueError, match="cost_bps"):
        run_backtest(returns, returns, cost_bps=-1.0)
    with pytest.raises(ValueError, match="ascending"):
        run_backtest(returns, returns.iloc[::-1], cost_bps=0.0)


# --- performance metrics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_metrics_match_naive_loops(seed: int) -> None:
    returns = random_returns(seed, scale=0.03)
    result = run_backtest(positions_from_signal(random_returns(seed + 100)), returns, cost_bps=3.0)
    metrics = performance_metrics(result, periods_per_year=8760)
    full = result.portfolio.tolist()
    assert metrics["max_drawdown"] == pytest.approx(naive_max_drawdown(full), rel=1e-12)
    assert metrics["max_drawdown"] > 0.05
    assert metrics["sharpe"] == pytest.approx(naive_sharpe(full, 8760), rel=1e-10)
    assert metrics["sharpe"] == pytest.approx(m.sharpe(result.portfolio, periods_per_year=8760), rel=1e-10)
    assert metrics["sortino"] == pytest.approx(naive_sortino(full, 8760), rel=1e-10)
    # The equity curve from log returns (how training builds it) gives the same drawdown.
    log_equity = np.exp(result.portfolio.apply(np.log1p).cumsum().to_numpy())
    assert metrics["max_drawdown"] == pytest.approx(m.max_drawdown(log_equity), rel=1e-10)
    growth = 1.0
    for x in full:
        growth *= 1.0 + x
    assert metrics["total_return"] == pytest.approx(growth - 1.0, rel=1e-10)
    assert metrics["annual_return"] == pytest.approx(growth ** (8760 / len(full)) - 1.0, rel=1e-10)
    assert metrics["annual_volatility"] == pytest.approx(np.std(full, ddof=1) * math.sqrt(8760), rel=1e-12)
    assert metrics["calmar"] == pytest.approx(metrics["annual_return"] / metrics["max_drawdown"], rel=1e-12)
    held, ret = result.held.to_numpy(), result.bar_returns.to_numpy()
    hits = total = 0
    for t in range(held.shape[0]):
        for s in range(held.shape[1]):
            if held[t, s] != 0 and np.isfinite(ret[t, s]):
                total += 1
                hits += (held[t, s] > 0 and ret[t, s] > 0) or (held[t, s] < 0 and ret[t, s] < 0)
    assert metrics["hit_rate"] == pytest.approx(hits / total, rel=1e-12)


def test_metrics_hand_case() -> None:
    # Portfolio returns +10%, -20%, +5% (one symbol, lag 0, no costs): equity 1.1, 0.88, 0.924.
    returns = frame([[0.10], [-0.20], [0.05]], ("A",))
    result = run_backtest(frame([[1.0], [1.0], [1.0]], ("A",)), returns, cost_bps=0.0, execution_lag=0)
    metrics = performance_metrics(result, periods_per_year=3)
    assert metrics["max_drawdown"] == pytest.approx(0.2)  # from 1.1 down to 0.88
    assert metrics["annual_return"] == pytest.approx(0.924 - 1.0)  # three bars = one "year"
    mean = (0.10 - 0.20 + 0.05) / 3
    assert metrics["sortino"] == pytest.approx(mean / math.sqrt(0.04 / 3) * math.sqrt(3))
    assert metrics["hit_rate"] == pytest.approx(2 / 3)
    # A loss on the first bar is a drawdown from the starting capital: -10% then +5% -> 0.10.
    falling = run_backtest(frame([[1.0], [1.0]], ("A",)), frame([[-0.10], [0.05]], ("A",)), 0.0, execution_lag=0)
    assert performance_metrics(falling, 8760)["max_drawdown"] == pytest.approx(0.10)


# --- positions -----------------------------------------------------------------------------------------------------


def test_probability_thresholds() -> None:
    p = frame([[0.70, 0.52, 0.50], [0.48, 0.40, np.nan]], ("A", "B", "C"))
    default = positions_from_signal(p, PositionConfig(mode="probability"))
    np.testing.assert_array_equal(default.to_numpy(), [[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    banded = positions_from_signal(p, PositionConfig(mode="probability", upper=0.55, lower=0.45))
    np.testing.assert_array_equal(banded.to_numpy(), [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    signs = positions_from_signal(frame([[2.5, -0.1, 0.0]], ("A", "B", "C")))
    np.testing.assert_array_equal(signs.to_numpy(), [[1.0, -1.0, 0.0]])
    with pytest.raises(ValueError, match="lower threshold"):
        PositionConfig(mode="probability", upper=0.45, lower=0.55)


def test_volatility_targeting_with_leverage_cap() -> None:
    p = frame([[0.9, 0.1, 0.8, 0.7, 0.6]], ("A", "B", "C", "D", "E"))
    vol = frame([[0.20, 0.40, 0.05, np.nan, 0.0]], ("A", "B", "C", "D", "E"))
    config = PositionConfig(mode="probability", target_vol=0.10, max_leverage=1.5)
    sized = positions_from_signal(p, config, forecast_vol=vol)
    # A: 0.10/0.20 = 0.5; B: short 0.10/0.40 = -0.25; C: 0.10/0.05 = 2 capped at 1.5; D, E: no usable forecast.
    np.testing.assert_allclose(sized.to_numpy(), [[0.5, -0.25, 1.5, 0.0, 0.0]])
    with pytest.raises(ValueError, match="forecast_vol"):
        positions_from_signal(p, config)
    with pytest.raises(ValueError, match="target_vol"):
        positions_from_signal(p, PositionConfig(mode="probability"), forecast_vol=vol)


def test_momentum_positions_use_only_past_closes() -> None:
    close = frame([[100.0, 50.0], [101.0, 49.0], [99.0, 49.0], [103.0, 48.0]])
    momentum = momentum_positions(close, lookback=2)
    np.testing.assert_array_equal(momentum.to_numpy(), [[0.0, 0.0], [0.0, 0.0], [-1.0, -1.0], [1.0, -1.0]])
    # Changing a later close never changes an earlier position.
    later = close.copy()
    later.iloc[3] = [1.0, 1000.0]
    np.testing.assert_array_equal(momentum_positions(later, 2).to_numpy()[:3], momentum.to_numpy()[:3])


def test_bar_returns_from_bars() -> None:
    config = SyntheticMarketConfig(n_symbols=3, n_sectors=1, regime_shift_at=None)
    bars = generate_bars(config, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    bars = bars.sample(frac=1.0, random_state=0)  # order must not matter
    returns = bar_returns_from_bars(bars)
    assert returns.shape == (24, 3) and returns.index.is_monotonic_increasing
    assert returns.iloc[0].isna().all() and returns.iloc[1:].notna().all().all()
    one = bars[bars["symbol"] == "SYM0001"].sort_values("timestamp")["close"].to_numpy()
    np.testing.assert_allclose(returns["SYM0001"].to_numpy()[1:], one[1:] / one[:-1] - 1.0, rtol=1e-14)
    # A missing bar: its return and the next one are NaN; the rest are unaffected.
    missing = (bars["symbol"] == "SYM0001") & (bars["timestamp"] == pd.Timestamp("2026-01-01 10:00", tz="UTC"))
    gap = bar_returns_from_bars(bars[~missing])
    assert np.flatnonzero(gap["SYM0001"].isna().to_numpy()).tolist() == [0, 10, 11]
    pd.testing.assert_frame_equal(gap.drop(columns="SYM0001"), returns.drop(columns="SYM0001"))


def test_forward_returns_compound_the_next_bars() -> None:
    returns = frame([[0.01], [0.02], [-0.03], [0.04]], ("A",))
    np.testing.assert_allclose(forward_returns(returns, 1)["A"].to_numpy(), [0.02, -0.03, 0.04, np.nan])
    two = forward_returns(returns, 2)["A"].to_numpy()
    np.testing.assert_allclose(two, [1.02 * 0.97 - 1, 0.97 * 1.04 - 1, np.nan, np.nan], rtol=1e-12)
