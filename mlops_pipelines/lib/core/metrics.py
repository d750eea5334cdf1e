"""The numbers that judge a forecast or a strategy, each defined once: training reports them on held-out data,
the backtest on replayed positions, monitoring on live decisions, so they compare.

Returns are per bar; annualizing multiplies by ``periods_per_year`` of the source's bar interval and calendar
(``BarClock.periods_per_year``), never by a constant. ``periods_per_year`` is defined in ``lib/core/bars.py``
(which the settings read at CLI start-up, before pandas and scipy may be imported) and re-exported here.

Uncertainty: ``block_bootstrap_interval`` puts a confidence interval on any of them. Observations close in time
are not independent (overlapping label horizons, volatility regimes, a market factor shared by every symbol at
the same bar), so the bootstrap resamples contiguous blocks of *times* and keeps every row of a sampled time.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from mlops_pipelines.lib.core.bars import CALENDARS as CALENDARS  # the annualization, defined with the bar clock
from mlops_pipelines.lib.core.bars import periods_per_year as periods_per_year

MIN_IC_SYMBOLS = 3  # fewer symbols at a time: no cross-sectional rank correlation for that time


def sharpe(returns: np.ndarray | pd.Series, periods_per_year: float) -> float:
    """mean / std (ddof=1) * sqrt(periods_per_year), no risk-free rate; 0 for fewer than two returns or a zero std."""
    r = np.asarray(returns, dtype=float)
    std = float(r.std(ddof=1)) if len(r) > 1 else 0.0
    return float(r.mean() / std * np.sqrt(periods_per_year)) if std > 0 else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall of an equity curve that starts at 1 (before its first value), as a positive
    fraction; 0 for an empty curve."""
    equity = np.asarray(equity, dtype=float)
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return float(np.max(1.0 - equity / peaks))


def hit_rate(position: np.ndarray, outcome: np.ndarray) -> float:
    """Share of the nonzero positions with a finite outcome whose outcome has the position's sign (a zero outcome
    is a miss); NaN when there is none."""
    position, outcome = np.asarray(position, dtype=float), np.asarray(outcome, dtype=float)
    exposed = (position != 0) & np.isfinite(outcome)
    return float(np.mean((position * outcome)[exposed] > 0)) if exposed.any() else float("nan")


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) identity; ties get average ranks. NaN without both classes."""
    positives = y > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(prediction: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(prediction) - np.asarray(outcome)) ** 2)))


def mae(prediction: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(prediction) - np.asarray(outcome))))


def pooled_ic(prediction: np.ndarray, outcome: np.ndarray) -> float:
    """Information coefficient over all rows at once: the Spearman rank correlation of forecasts and outcomes
    (a model's test split, the labelled live decisions)."""
    return float(np.corrcoef(stats.rankdata(prediction), stats.rankdata(outcome))[0, 1])


def cross_sectional_ic(signal: pd.DataFrame, forward_returns: pd.DataFrame) -> float:
    """Information coefficient of a strategy: the mean over time of the cross-sectional Spearman correlation
    between the signal at t and the forward return from t (time x symbol frames).

    Aligned by label (inner join); ties get average ranks. A time is skipped when fewer than ``MIN_IC_SYMBOLS``
    symbols have both values, or when either side is constant across symbols (the correlation is undefined).
    NaN if every time is skipped.
    """
    s, f = signal.align(forward_returns, join="inner")
    sv, fv = s.to_numpy(dtype=float), f.to_numpy(dtype=float)
    valid = np.isfinite(sv) & np.isfinite(fv)
    count = valid.sum(axis=1)
    center = ((count + 1) / 2.0)[:, None]  # the mean of average ranks 1..k is (k + 1) / 2
    s_rank = pd.DataFrame(np.where(valid, sv, np.nan)).rank(axis=1).to_numpy() - center
    f_rank = pd.DataFrame(np.where(valid, fv, np.nan)).rank(axis=1).to_numpy() - center
    s_rank, f_rank = np.where(valid, s_rank, 0.0), np.where(valid, f_rank, 0.0)
    cov = (s_rank * f_rank).sum(axis=1)
    s_var, f_var = (s_rank**2).sum(axis=1), (f_rank**2).sum(axis=1)
    ok = (count >= MIN_IC_SYMBOLS) & (s_var > 0) & (f_var > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(cov[ok] / np.sqrt(s_var[ok] * f_var[ok])))


def volatility_forecast_metrics(forecast: np.ndarray, realized: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of volatility forecasts, and QLIKE on variances:
    mean(realized² / forecast² - log(realized² / forecast²) - 1), 0 for a perfect forecast.

    Pairs where either value is non-finite or not positive are ignored (by all three); ``n`` counts the rest.
    """
    f = np.asarray(forecast, dtype=float).ravel()
    r = np.asarray(realized, dtype=float).ravel()
    if f.shape != r.shape:
        raise ValueError(f"forecast and realized differ in size: {f.shape} vs {r.shape}")
    ok = np.isfinite(f) & np.isfinite(r) & (f > 0) & (r > 0)
    if not ok.any():
        return {"rmse": float("nan"), "mae": float("nan"), "qlike": float("nan"), "n": 0.0}
    f, r = f[ok], r[ok]
    ratio = (r / f) ** 2
    return {
        "rmse": rmse(f, r),
        "mae": mae(f, r),
        "qlike": float(np.mean(ratio - np.log(ratio) - 1.0)),
        "n": float(ok.sum()),
    }


CI_LEVEL = 0.90  # two-sided: the lower bound is a one-sided 95% bound, the one a promotion threshold compares
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: the same data gives the same interval, so a gate verdict can be reproduced


def block_length(n_times: int, min_block: int = 1) -> int:
    """Bars per bootstrap block: n^(1/3) (the rate that balances the bias and variance of the block bootstrap's
    variance estimate), at least ``min_block`` (a label horizon: rows whose labels overlap share a block), at most
    ``n_times``."""
    return int(max(1, min(n_times, max(min_block, int(np.ceil(n_times ** (1 / 3)))))))


def block_bootstrap_samples(n: int, block: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, n) positions of a circular block bootstrap (Politis & Romano, 1992): each sample is
    ceil(n / block) blocks of ``block`` consecutive positions, each block starting at a uniformly drawn position
    and wrapping from the end to the start, concatenated and cut to n."""
    if n < 1 or block < 1:
        raise ValueError(f"need n >= 1 and block >= 1, got n={n}, block={block}")
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_samples, n_blocks))
    positions = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return positions.reshape(n_samples, n_blocks * block)[:, :n]


def block_bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    times: np.ndarray | pd.Series | pd.Index,
    *,
    min_block: int = 1,
    level: float = CI_LEVEL,
    n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` by a circular block bootstrap over time.

    ``times`` gives each row's time (rows of one time - the symbols of one bar - stay together); ``statistic``
    takes an array of row positions and returns the statistic of those rows (rows may repeat). Blocks hold
    ``block_length(n_times, min_block)`` consecutive distinct times. Samples where the statistic is not finite
    are left out; (nan, nan) with fewer than two distinct times or when no sample is finite.
    """
    codes, uniques = pd.factorize(np.asarray(times), sort=True)
    n_times = len(uniques)
    if n_times < 2:
        return float("nan"), float("nan")
    order = np.argsort(codes, kind="stable")  # rows grouped by time
    counts = np.bincount(codes, minlength=n_times)
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]])
    values = np.empty(n_samples)
    samples = block_bootstrap_samples(n_times, block_length(n_times, min_block), n_samples, seed)
    for i, sampled in enumerate(samples):
        sizes = counts[sampled]
        start_in_sample = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        within = np.arange(int(sizes.sum())) - np.repeat(start_in_sample, sizes)
        values[i] = statistic(order[np.repeat(first_row[sampled], sizes) + within])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
