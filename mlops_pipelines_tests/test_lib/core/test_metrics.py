"""The metric definitions every stage shares, against references (scipy, naive loops)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_pipelines.lib.core.metrics import (
    auc,
    block_bootstrap_interval,
    block_bootstrap_samples,
    block_length,
    cross_sectional_ic,
    hit_rate,
    max_drawdown,
    sharpe,
    volatility_forecast_metrics,
)
from mlops_pipelines.lib.training.training import quality_metrics
from mlops_pipelines_tests.reference_impls import naive_block_bootstrap_interval

HOURS = pd.date_range("2026-01-01", periods=100, freq="h", tz="UTC")


def frame(values: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=float), index=HOURS[: len(values)], columns=list(columns))


def test_metrics_against_references() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = y + rng.normal(size=500)
    u = stats.mannwhitneyu(score[y == 1], score[y == 0]).statistic
    assert auc(y, score) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)
    assert max_drawdown(np.exp(np.cumsum(np.log([1.1, 0.5, 1.2])))) == pytest.approx(0.5)
    assert max_drawdown(np.exp(np.cumsum([0.01, 0.02]))) == 0.0
    assert max_drawdown(np.array([0.8])) == pytest.approx(0.2)  # the curve starts at 1
    assert max_drawdown(np.array([])) == 0.0
    returns = pd.Series(rng.normal(0.001, 0.01, 1000))
    assert sharpe(returns, 252) == pytest.approx(returns.mean() / returns.std() * np.sqrt(252))


def test_cross_sectional_ic_matches_scipy_spearman() -> None:
    rng = np.random.default_rng(11)
    n_bars, n_symbols = 60, 8
    forward = rng.normal(0.0, 0.01, (n_bars, n_symbols))
    signal = 0.3 * forward / 0.01 + rng.normal(size=(n_bars, n_symbols))
    signal[5, :] = np.round(signal[5, :])  # ties
    signal[7, 2:] = np.nan  # only 2 valid symbols: skipped
    forward[9, [0, 3]] = np.nan  # fewer symbols, still counted
    signal[11, :] = 1.0  # constant: undefined, skipped
    expected = []
    for t in range(n_bars):
        ok = np.isfinite(signal[t]) & np.isfinite(forward[t])
        if ok.sum() < 3 or np.ptp(signal[t, ok]) == 0:
            continue
        expected.append(np.asarray(stats.spearmanr(signal[t, ok], forward[t, ok])[0], dtype=float).item())
    assert len(expected) == n_bars - 2
    ic = cross_sectional_ic(frame(signal, tuple("ABCDEFGH")), frame(forward, tuple("ABCDEFGH")))
    assert ic == pytest.approx(float(np.mean(expected)), rel=1e-12)
    assert ic > 0.15
    assert math.isnan(cross_sectional_ic(frame(signal[:1, :2], ("A", "B")), frame(forward[:1, :2], ("A", "B"))))


def test_volatility_forecast_metrics() -> None:
    rng = np.random.default_rng(12)
    realized = rng.uniform(0.1, 0.6, 200)
    perfect = volatility_forecast_metrics(realized, realized)
    assert perfect == {"rmse": 0.0, "mae": 0.0, "qlike": 0.0, "n": 200.0}
    forecast = realized * rng.uniform(0.5, 1.5, 200)
    forecast[:3] = [np.nan, 0.0, -0.2]  # ignored
    realized_with_bad = realized.copy()
    realized_with_bad[3] = np.inf  # ignored
    metrics = volatility_forecast_metrics(forecast, realized_with_bad)
    sq = ab = ql = 0.0
    n = 0
    for f, r in zip(forecast, realized_with_bad, strict=True):
        if not (np.isfinite(f) and np.isfinite(r) and f > 0 and r > 0):
            continue
        n += 1
        sq += (f - r) ** 2
        ab += abs(f - r)
        ql += r**2 / f**2 - math.log(r**2 / f**2) - 1
    assert metrics["n"] == n == 196
    assert metrics["rmse"] == pytest.approx(math.sqrt(sq / n), rel=1e-12)
    assert metrics["mae"] == pytest.approx(ab / n, rel=1e-12)
    assert metrics["qlike"] == pytest.approx(ql / n, rel=1e-12)
    assert metrics["qlike"] > 0.01
    # QLIKE punishes under-forecasting more than over-forecasting by the same factor.
    under = volatility_forecast_metrics(realized * 0.8, realized)["qlike"]
    over = volatility_forecast_metrics(realized * 1.25, realized)["qlike"]
    assert under > over > 0


def test_hit_rate_is_one_definition_for_positions_and_probabilities() -> None:
    """The backtest's hit rate (held positions against bar returns) and training's (predicted side against the
    label) are the same function; the classifier's equals the share of right sides it always was."""
    position = np.array([1.0, -1.0, 0.0, 1.0, -1.0, 1.0])
    outcome = np.array([0.02, 0.01, 0.5, 0.0, -0.03, np.nan])  # flat, zero return and NaN: not a hit
    assert hit_rate(position, outcome) == pytest.approx(2 / 4)  # the zero outcome is a miss, NaN is not exposed
    assert math.isnan(hit_rate(np.zeros(3), np.ones(3)))
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400).astype(float)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 400), 0, 1)
    p[:5] = 0.5  # exactly 0.5 predicts "down", as it always did
    assert quality_metrics("classification", y, p)["hit_rate"] == pytest.approx(float(np.mean((p > 0.5) == (y > 0.5))))


def test_block_bootstrap_matches_the_naive_loop_on_a_panel() -> None:
    """Rows of one time stay together, blocks wrap around the end: the same interval as a loop over blocks."""
    rng = np.random.default_rng(11)
    times = np.repeat(np.arange(50), rng.integers(1, 5, 50))  # 50 bars, 1-4 symbols each
    rng.shuffle(times)  # row order must not matter
    y = rng.integers(0, 2, len(times)).astype(float)
    score = y * 0.3 + rng.normal(size=len(times))

    def statistic(rows: np.ndarray) -> float:
        return auc(y[rows], score[rows])

    fast = block_bootstrap_interval(statistic, times, min_block=4, level=0.9, n_samples=200, seed=5)
    naive = naive_block_bootstrap_interval(
        statistic, list(times), block=block_length(50, 4), level=0.9, n_samples=200, seed=5
    )
    assert fast == pytest.approx(naive, rel=1e-12)
    assert fast[0] < auc(y, score) < fast[1]


def test_block_bootstrap_widens_the_interval_of_autocorrelated_data() -> None:
    """The standard error of a mean: iid data -> sigma / sqrt(n) with blocks of any length; AR(1) with phi = 0.6
    -> larger by sqrt((1 + phi) / (1 - phi)) = 2, which long blocks recover and single-row resampling misses."""
    rng = np.random.default_rng(2)
    n, phi = 4000, 0.6
    iid = rng.normal(size=n)
    ar = np.empty(n)
    ar[0] = iid[0]
    for t in range(1, n):
        ar[t] = phi * ar[t - 1] + np.sqrt(1 - phi**2) * iid[t]
    z = 1.6448536269514722  # the 90% interval's half-width in standard errors

    def half_width(x: np.ndarray, min_block: int) -> float:
        low, high = block_bootstrap_interval(lambda rows: float(x[rows].mean()), np.arange(n), min_block=min_block)
        return (high - low) / 2 / z

    assert half_width(iid, 1) == pytest.approx(1 / np.sqrt(n), rel=0.15)
    assert half_width(ar, 50) == pytest.approx(2 / np.sqrt(n), rel=0.2)
    single_bars = ar[block_bootstrap_samples(n, 1, 1000, seed=0)].mean(axis=1).std()
    assert single_bars < 1.5 / np.sqrt(n)  # resampling single bars understates it


def test_block_bootstrap_edge_cases() -> None:
    assert np.isnan(block_bootstrap_interval(lambda rows: 1.0, np.zeros(10))).all()  # one distinct time
    assert np.isnan(block_bootstrap_interval(lambda rows: float("nan"), np.arange(10))).all()
    samples = block_bootstrap_samples(7, 3, 4, seed=1)
    assert samples.shape == (4, 7) and samples.min() >= 0 and samples.max() < 7
    assert ((np.diff(samples[:, :3], axis=1) % 7) == 1).all()  # a block is consecutive, wrapping around
    assert block_length(1000, 4) == 10 and block_length(20, 24) == 20 and block_length(1, 1) == 1
    with pytest.raises(ValueError, match="block >= 1"):
        block_bootstrap_samples(5, 0, 1, seed=0)
