"""The Diebold-Mariano test of champion/challenger: against statsmodels' HAC regression, its size under
overlapping labels and shared decision times (the placebo), its power, and its losses."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from mlops_pipelines.lib.monitoring.champion_challenger import (
    ChallengePolicy,
    Verdict,
    diebold_mariano,
    hac_lag,
    judge,
    losses,
)


def overlapping(rng: np.random.Generator, times: int, symbols: int, horizon: int, shift: float = 0.0) -> np.ndarray:
    """Loss differentials of ``symbols`` decisions at each of ``times`` decision times, sharing a market shock per
    time and, like labels looking ``horizon`` bars ahead, a moving sum of the last ``horizon`` shocks."""
    shocks = rng.normal(size=times + horizon)
    common = np.convolve(shocks, np.ones(horizon), "valid")[:times]
    return shift + common[:, None] + rng.normal(size=(times, symbols))


def test_statistic_and_p_value_equal_statsmodels_hac_regression() -> None:
    rng = np.random.default_rng(5)
    d = overlapping(rng, times=300, symbols=6, horizon=4, shift=0.3)
    times = np.repeat(np.arange(300), 6)
    test = diebold_mariano(times, d.ravel(), lag=4)
    series = d.mean(axis=1)  # cluster by decision time
    fit = sm.OLS(series, np.ones(len(series))).fit(cov_type="HAC", cov_kwds={"maxlags": 4, "use_correction": False})
    assert test.n_decisions == 1800 and test.n_times == 300
    assert test.mean_difference == pytest.approx(fit.params[0], rel=1e-12)
    assert test.statistic == pytest.approx(fit.tvalues[0], rel=1e-10)
    assert fit.pvalues[0] == pytest.approx(math.erfc(abs(fit.tvalues[0]) / math.sqrt(2)))  # statsmodels: normal
    assert test.p_value == pytest.approx(2 * stats.t.sf(abs(fit.tvalues[0]), 300 // 4 - 1), rel=1e-8)  # ours: t


@pytest.mark.parametrize("horizon", [4, 24])
def test_placebo_equal_forecasts_are_undecided_at_the_nominal_rate_where_a_naive_variance_is_not(
    horizon: int,
) -> None:
    rng = np.random.default_rng(11)
    policy = ChallengePolicy(alpha=0.05, min_decision_times=48)
    hac, naive = [], []
    for _ in range(400):
        d = overlapping(rng, times=168, symbols=6, horizon=horizon)
        times = np.repeat(np.arange(168), 6)
        hac.append(judge(diebold_mariano(times, d.ravel(), lag=hac_lag(horizon)), policy) != Verdict.UNDECIDED)
        z = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))  # iid decisions: ignores both dependences
        naive.append(math.erfc(abs(z) / math.sqrt(2)) < 0.05)
    assert np.mean(hac) < 0.09  # near the nominal 5% (measured 8% and 3%: 4 and 24 bars, 1000 draws)
    assert np.mean(naive) > 0.5  # the naive test calls most placebos


def test_identical_versions_are_undecided_and_a_clearly_better_one_is_better() -> None:
    times = np.repeat(np.arange(100), 6)
    same = diebold_mariano(times, np.zeros(600), lag=4)
    assert (same.statistic, same.p_value, judge(same, ChallengePolicy())) == (0.0, 1.0, Verdict.UNDECIDED)
    d = overlapping(np.random.default_rng(2), times=168, symbols=6, horizon=4, shift=-3.0)
    better = diebold_mariano(np.repeat(np.arange(168), 6), d.ravel(), lag=4)
    assert judge(better, ChallengePolicy()) == Verdict.BETTER
    worse = diebold_mariano(np.repeat(np.arange(168), 6), -d.ravel(), lag=4)
    assert judge(worse, ChallengePolicy()) == Verdict.WORSE
    few = diebold_mariano(np.repeat(np.arange(20), 6), d[:20].ravel(), lag=4)
    assert few.p_value < 0.01 and judge(few, ChallengePolicy()) == Verdict.UNDECIDED  # too few decision times


def test_losses_are_log_loss_and_squared_error() -> None:
    y, p = np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.2, 0.0])
    np.testing.assert_allclose(losses("classification", y, p), [-np.log(0.9), -np.log(0.8), -np.log(1e-15)])
    np.testing.assert_allclose(losses("regression", np.array([1.0, 2.0]), np.array([1.5, 0.0])), [0.25, 4.0])
