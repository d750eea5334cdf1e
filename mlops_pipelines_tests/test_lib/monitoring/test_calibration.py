"""Calibrated thresholds keep their promise when the reference holds few independent windows."""

import numpy as np
from scipy.signal import lfilter

from mlops_pipelines.lib.monitoring import calibration, drift


def test_thresholds_from_few_independent_windows_keep_their_false_alarm_rate() -> None:
    """An autocorrelated feature (AR(1), phi 0.95, one value an hour) whose reference holds 5 windows of 48 h; a
    new window from the same process (no drift by construction) is judged against the limits calibrated on that
    reference, 300 times (seeded). The SEVERE (99%) and MODERATE (95%) limits must be exceeded about as rarely as
    they say: the spread of 5 windows underestimates the truth, so limits fitted without the small-sample
    widening were exceeded 6.0% / 11.0% of the time (with it: 0.7% / 4.7%)."""
    rng = np.random.default_rng(0)
    length, windows, burn_in, trials = 48, 5, 500, 300

    def ar(n: int) -> np.ndarray:
        return np.asarray(lfilter([1.0], [1.0, -0.95], rng.normal(size=n + burn_in)))[burn_in:]

    severe = moderate = 0
    for _ in range(trials):
        reference, current = ar(length * windows), ar(length)
        edges = drift.psi_edges(np.sort(reference))
        bins = np.searchsorted(edges, reference, side="right")
        hours = np.arange(len(reference))
        agg = calibration.HourlyAggregates.of(hours, reference, bins, len(edges) + 1, 0, len(reference))
        limits = calibration.Thresholds.of(agg, length, (0.95, 0.99), min_rows=30)
        assert limits.independent == windows
        shift = abs(current.mean() - reference.mean()) / reference.std(ddof=1)
        severe += shift > limits.abs_mean_shift_sd[1]
        moderate += shift > limits.abs_mean_shift_sd[0]
    assert severe <= 0.01 * trials, severe
    assert moderate <= 0.05 * trials, moderate


def test_the_widening_vanishes_with_many_windows_and_grows_with_few() -> None:
    assert calibration.small_sample_factor(0.99, 1000) < 1.01
    assert 1.05 < calibration.small_sample_factor(0.99, 30) < 1.1
    assert calibration.small_sample_factor(0.99, 5) > 1.6
