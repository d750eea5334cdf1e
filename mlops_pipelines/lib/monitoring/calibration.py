"""How much a window's statistics move when nothing has changed: the reference window's own variability.

A drift statistic is only meaningful against what the same statistic does between windows of the same length
drawn from the reference itself. One day of a 120-bar rolling feature is a handful of independent values, not
a sample of the 30-day distribution: its PSI against the reference is large on every calm day. So each
threshold is read off a *null distribution*: the statistic of every contiguous block of the current window's
length inside the reference (one per hourly offset; contiguous, so autocorrelation is kept), each block
compared with the rest of the reference (leave-block-out, so a block is not compared with itself).

The blocks never touch the rows again: the reference profile keeps, per hour of the reference window and per
column, the count, sum and sum of squares of the values (centred on the column's mean) and the counts per PSI
bin (``HourlyAggregates``). A block is a sum of consecutive hours, so the null for any window length costs a few
cumulative sums; it is cached with the profile (``reference_profiles``), built once per reference window.

Thresholds (``Thresholds.of``), for each statistic at each of the policy's quantiles (MODERATE, SEVERE): the
higher of the empirical quantile over the blocks and a fitted one (PSI: a scaled chi-squared with the blocks'
mean and variance; the signed mean shift and log variance ratio: a normal). The fit is what NannyML's
``StandardDeviationThreshold`` does (mean + k standard deviations of the metric over reference chunks): stable
when the reference holds few independent windows, where an empirical 99th percentile is just the maximum.

The effective sample size of a window: the variance of a column over the variance of its block means, i.e. how
many independent values a block is worth given autocorrelation and co-movement across symbols, scaled to the
current window's rows.

The multivariate signal (``Reconstruction``): per view, a PCA of the standardized reference (the components that
explain ``variance_explained`` of it); a row's reconstruction error is its distance from that plane. A window's
mean error against the reference's, judged against the blocks' ratios like any statistic, sees a change in how
features move together that no single feature shows (NannyML's data reconstruction drift). Any fixed plane makes
an honest test, since the reference's blocks and the current window are measured against the same one: the daily
fold of a profile keeps its plane (and the reference's per-hour error sums) while the window it was fitted on
covers most of the new one, so only the new day's rows are read (``Reconstruction.refolded``).
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from mlops_pipelines.lib.monitoring.drift import psi_rows

HOUR_S = 3600


@dataclass(frozen=True)
class HourlyAggregates:
    """One column over the reference window, per hour slot (slot 0 = ``start_hour``, epoch hours): what any
    block of consecutive hours needs. ``bins`` holds counts per PSI bin (numeric columns: the reference's
    quantile bins; categorical: per category, in the profile's category order)."""

    start_hour: int
    count: np.ndarray  # (H,) finite values
    total: np.ndarray  # (H,) sum of (value - center)
    squares: np.ndarray  # (H,) sum of (value - center)^2
    bins: np.ndarray  # (H, B)
    center: float = 0.0

    @classmethod
    def of(
        cls, hours: np.ndarray, values: np.ndarray | None, bin_index: np.ndarray, n_bins: int, start: int, slots: int
    ) -> "HourlyAggregates":
        """``hours``: epoch hour of each row; ``values``: the numeric values (None: categorical, moments left at
        0); ``bin_index``: each row's bin (-1: missing, not counted)."""
        slot = hours - start
        keep = (bin_index >= 0) & (slot >= 0) & (slot < slots)
        if not keep.all():  # (a profile's sorted values all count: no copies then)
            slot, bin_index = slot[keep], bin_index[keep]
            values = values[keep] if values is not None else None
        count = np.bincount(slot, minlength=slots).astype(float)
        bins = np.bincount(slot * n_bins + bin_index, minlength=slots * n_bins).reshape(slots, n_bins).astype(float)
        total = squares = np.zeros(slots)
        center = 0.0
        if values is not None:
            center = float(values.mean()) if len(values) else 0.0
            centred = values - center
            total = np.bincount(slot, weights=centred, minlength=slots)
            squares = np.bincount(slot, weights=centred * centred, minlength=slots)
        return cls(start, count, total, squares, bins, center)

    @classmethod
    def of_sorted(
        cls, values: np.ndarray, value_slots: np.ndarray, edges: np.ndarray, start: int, slots: int
    ) -> "HourlyAggregates":
        """A numeric column's from its finite values sorted, each one's hour slot (0 .. slots - 1) and its PSI
        bins' ``edges``: a bin is a run of the sorted values, so no value is searched for."""
        center = float(values.mean()) if len(values) else 0.0
        centred = values - center
        total = np.bincount(value_slots, weights=centred, minlength=slots)
        squares = np.bincount(value_slots, weights=centred * centred, minlength=slots)
        bins = slot_bins(values, value_slots, edges, slots)
        return cls(start, bins.sum(axis=1), total, squares, bins, center)

    def recentered(self, center: float) -> "HourlyAggregates":
        """The same sums centred on ``center`` instead (exact algebra: what ``of`` gives with that centre)."""
        shift = self.center - center
        total = self.total + self.count * shift
        squares = self.squares + 2 * shift * self.total + self.count * shift * shift
        return HourlyAggregates(self.start_hour, self.count, total, squares, self.bins, center)

    def folded(self, kept: np.ndarray, fresh: "HourlyAggregates") -> "HourlyAggregates":
        """The hours of ``fresh``'s window (its ``start_hour`` and slots), taken from this one where ``kept`` (per
        slot of the new window) and from ``fresh`` elsewhere, centred on the mean of the result (numeric sums
        only: a one-bin score, as the reconstruction error)."""
        slots = len(fresh.count)
        moved = np.arange(len(self.count)) + self.start_hour - fresh.start_hour
        inside = (moved >= 0) & (moved < slots)
        inside[inside] = kept[moved[inside]]
        count, total = np.zeros(slots), np.zeros(slots)
        count[moved[inside]] = self.count[inside]
        total[moved[inside]] = self.total[inside] + self.count[inside] * self.center  # uncentred
        new = ~kept
        count[new], total[new] = fresh.count[new], fresh.total[new] + fresh.count[new] * fresh.center
        center = float(total.sum() / count.sum()) if count.sum() else 0.0
        old, young = self.recentered(center), fresh.recentered(center)
        total, squares = np.zeros(slots), np.zeros(slots)
        total[moved[inside]], squares[moved[inside]] = old.total[inside], old.squares[inside]
        total[new], squares[new] = young.total[new], young.squares[new]
        return HourlyAggregates(fresh.start_hour, count, total, squares, count[:, None].copy(), center)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}/count": self.count,
            f"{prefix}/total": self.total,
            f"{prefix}/squares": self.squares,
            f"{prefix}/bins": self.bins,
            f"{prefix}/meta": np.array([self.start_hour, self.center]),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], prefix: str) -> "HourlyAggregates":
        start, center = data[f"{prefix}/meta"]
        return cls(
            int(start),
            data[f"{prefix}/count"],
            data[f"{prefix}/total"],
            data[f"{prefix}/squares"],
            data[f"{prefix}/bins"],
            float(center),
        )


def slot_bins(values: np.ndarray, value_slots: np.ndarray, edges: np.ndarray, slots: int) -> np.ndarray:
    """Counts per hour slot (rows) and PSI bin [edge_i-1, edge_i) (columns) of sorted ``values``."""
    bounds = np.concatenate([[0], np.searchsorted(values, edges, side="left"), [len(values)]])
    out = np.empty((slots, len(edges) + 1))
    for b in range(len(edges) + 1):
        out[:, b] = np.bincount(value_slots[bounds[b] : bounds[b + 1]], minlength=slots)
    return out


def slot_count(start_hour: int, end_hour: int) -> int:
    return max(end_hour - start_hour, 0)


@dataclass(frozen=True)
class Blocks:
    """Every block of ``length`` consecutive hours of one column (one row per block with at least ``min_rows``
    values), each next to the rest of the reference."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    shares: np.ndarray  # (blocks, B)
    rest_n: np.ndarray
    rest_mean: np.ndarray
    rest_var: np.ndarray
    rest_shares: np.ndarray
    independent: float  # how many non-overlapping windows of this length the reference holds

    @classmethod
    def of(cls, agg: HourlyAggregates, length: int, min_rows: int) -> "Blocks":
        def window_sums(values: np.ndarray) -> np.ndarray:
            cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
            return cumulative[length:] - cumulative[:-length] if len(values) >= length else cumulative[:0]

        n, total, squares, bins = (window_sums(a) for a in (agg.count, agg.total, agg.squares, agg.bins))
        keep = n >= max(min_rows, 2)
        n, total, squares, bins = n[keep], total[keep], squares[keep], bins[keep]
        big_n, big_total, big_squares = agg.count.sum(), agg.total.sum(), agg.squares.sum()
        rest_n, rest_total, rest_squares = big_n - n, big_total - total, big_squares - squares
        with np.errstate(divide="ignore", invalid="ignore"):
            mean, rest_mean = total / n, rest_total / rest_n
            var = (squares - n * mean**2) / (n - 1)
            rest_var = (rest_squares - rest_n * rest_mean**2) / (rest_n - 1)
            shares = bins / bins.sum(axis=1, keepdims=True)
            rest_bins = agg.bins.sum(axis=0)[None, :] - bins
            rest_shares = rest_bins / rest_bins.sum(axis=1, keepdims=True)
        # non-overlapping windows of this length the reference holds: the valid blocks (one per hourly offset)
        # plus the offsets a window's length covers, over that length (hourly bars around the clock: hours /
        # length; daily bars or sessions: the same span, though most hour slots are empty)
        independent = (len(n) + length - 1) / length if len(n) else 0.0
        return cls(n, mean, var, shares, rest_n, rest_mean, rest_var, rest_shares, independent)

    def psi(self) -> np.ndarray:
        return psi_rows(self.rest_shares, self.shares)

    def mean_shift(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.mean - self.rest_mean) / np.sqrt(self.rest_var)

    def log_variance_ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self.var / self.rest_var)

    def effective_size_per_row(self) -> float:
        """Independent values a row is worth: the column's variance over the variance of block means, per row of
        a block (1 for independent rows; far below for a rolling feature that hardly moves within a block)."""
        means = self.mean[np.isfinite(self.mean)]
        if len(means) < 2 or not np.isfinite(self.rest_var).any():
            return float("nan")
        variance = float(np.nanmedian(self.rest_var))
        spread = float(np.var(means, ddof=1))
        if spread <= 0:
            return 1.0
        return min(variance / spread / float(np.mean(self.n)), 1.0)


def small_sample_factor(quantile: float, independent: float) -> float:
    """How much wider a fitted ``quantile`` must be when the null's spread is estimated from ``independent``
    windows: the prediction bound of a new window (Student's t with ``independent - 1`` degrees of freedom, times
    sqrt(1 + 1/n)) over the normal's. About 1.0 with 30 windows (a day against 30 days of hourly bars), about 2
    with 5 (a quarter of daily bars against 15 months): the spread of 5 windows is often far below the true one,
    and a 99th percentile read off it would alarm far more often than 1% of the time."""
    if not np.isfinite(independent) or independent <= 2:
        independent = 2.0 + 1e-9  # fewer windows are refused (min_windows): keep the factor finite
    z = float(stats.norm.ppf(quantile))
    return float(stats.t.ppf(quantile, independent - 1) * np.sqrt(1 + 1 / independent) / z)


def upper_threshold(values: np.ndarray, quantile: float, fit: str, independent: float = float("inf")) -> float:
    """The ``quantile`` of a null statistic: the higher of the empirical quantile over the blocks and a fitted one.
    ``fit``: ``chi2`` (a non-negative statistic, PSI: a scaled chi-squared with the blocks' mean and variance) or
    ``abs_normal`` (the absolute value of a signed, roughly normal statistic: |mean| + SD * z). The fit is
    NannyML's mean + k standard deviations, with k from the quantile and the statistic's shape: stable when the
    reference holds few independent windows, where an empirical 99th percentile is just the maximum. The fitted
    spread is widened by ``small_sample_factor`` for the ``independent`` windows it was estimated from.

    (Robust moments, median and MAD, were tried: they ignore a shift's first days once the rolling reference
    holds them, but also the calm market's own volatile episodes, which then raise false alarms.)"""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan")
    if fit == "chi2":
        widen = small_sample_factor(quantile, independent) if np.isfinite(independent) else 1.0
        empirical = float(np.quantile(finite, quantile))
        mean, var = float(finite.mean()), float(finite.var(ddof=1)) * widen**2
        fitted = (var / (2 * mean)) * stats.chi2.ppf(quantile, 2 * mean**2 / var) if mean > 0 and var > 0 else mean
        return max(empirical, float(fitted))
    empirical = float(np.quantile(np.abs(finite), quantile))
    two_sided = (1 + quantile) / 2
    widen = small_sample_factor(two_sided, independent) if np.isfinite(independent) else 1.0
    fitted = abs(float(finite.mean())) + float(finite.std(ddof=1)) * float(stats.norm.ppf(two_sided)) * widen
    return max(empirical, fitted)


@dataclass(frozen=True)
class Thresholds:
    """A column's calibrated limits at the policy's quantiles (index 0 MODERATE, 1 SEVERE), how many blocks made
    them, and what one row of a window is worth in independent values. NaN: not computable (too few blocks)."""

    windows: int
    independent: float
    effective_per_row: float
    psi: tuple[float, float]
    abs_mean_shift_sd: tuple[float, float]
    abs_log_variance_ratio: tuple[float, float]

    @classmethod
    def of(cls, agg: HourlyAggregates, length: int, quantiles: Sequence[float], min_rows: int) -> "Thresholds":
        blocks = Blocks.of(agg, length, min_rows)
        psi, shift, lvr = blocks.psi(), blocks.mean_shift(), blocks.log_variance_ratio()
        numeric = bool(np.any(agg.squares))

        def pair(values: np.ndarray, fit: str) -> tuple[float, float]:
            a, b = (upper_threshold(values, q, fit, blocks.independent) for q in quantiles)
            return (a, b)

        nan = (float("nan"), float("nan"))
        return cls(
            windows=len(blocks.n),
            independent=blocks.independent,
            effective_per_row=blocks.effective_size_per_row() if numeric else float("nan"),
            psi=pair(psi, "chi2"),
            abs_mean_shift_sd=pair(shift, "abs_normal") if numeric else nan,
            abs_log_variance_ratio=pair(lvr, "abs_normal") if numeric else nan,
        )


@dataclass(frozen=True)
class RatioThresholds:
    """For a non-negative per-row score (the reconstruction error): limits on a window's mean score over the
    reference's, at the policy's quantiles (upper side only: a normal fit over the blocks, or the empirical
    quantile if higher), from ``windows`` blocks; ``independent`` and ``effective_per_row`` as for ``Thresholds``."""

    windows: int
    independent: float
    effective_per_row: float
    limits: tuple[float, float]

    @classmethod
    def of(cls, agg: HourlyAggregates, length: int, quantiles: Sequence[float], min_rows: int) -> "RatioThresholds":
        blocks = Blocks.of(agg, length, min_rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (blocks.mean + agg.center) / (blocks.rest_mean + agg.center)
        finite = ratio[np.isfinite(ratio)]
        limits = [float("nan"), float("nan")]
        if len(finite) >= 2:
            for i, q in enumerate(quantiles):
                widen = small_sample_factor(q, blocks.independent)
                fitted = float(finite.mean()) + float(finite.std(ddof=1)) * float(stats.norm.ppf(q)) * widen
                limits[i] = max(float(np.quantile(finite, q)), fitted)
        per_row = blocks.effective_size_per_row()
        return cls(len(blocks.n), blocks.independent, per_row, (limits[0], limits[1]))

    def mean(self, agg: HourlyAggregates) -> float:
        """The reference's mean score."""
        count = float(agg.count.sum())
        return float(agg.total.sum()) / count + agg.center if count else float("nan")


@dataclass(frozen=True)
class Reconstruction:
    """A view's principal plane over the reference: standardize (``mean``, ``scale``; missing -> the mean), project
    on ``components``, measure the distance back. ``hourly``: the reference rows' errors per hour slot.
    ``fitted_on``: the epoch hours [start, end) of the window the plane was fitted on (a folded profile keeps its
    base's plane while that window still covers most of its own: ``refolded``)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (k, F)
    hourly: HourlyAggregates
    fitted_on: tuple[int, int] = (0, 0)

    def errors(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Per row: the Euclidean distance between the standardized row and its projection (rows of the window in
        ``columns``; rows with no finite value among the features are skipped: they carry no information)."""
        return self.matrix_errors(np.column_stack([np.asarray(columns[f], dtype=float) for f in self.features]))

    def matrix_errors(self, matrix: np.ndarray) -> np.ndarray:
        """``errors`` of the rows of ``matrix`` (one column per feature, in ``features`` order)."""
        finite = np.isfinite(matrix)
        present = finite.any(axis=1)
        if not present.all():
            matrix, finite = matrix[present], finite[present]
        # the squared distance z'(I - C'C)z of each standardized row z, in chunks (no per-row residual kept)
        residual = np.eye(len(self.features)) - self.components.T @ self.components
        out = np.empty(len(matrix))
        chunk = 500_000
        for first in range(0, len(matrix), chunk):
            z = (matrix[first : first + chunk] - self.mean) / self.scale
            z[~finite[first : first + chunk]] = 0.0
            # einsum, not BLAS: a (rows x F) @ (F x F) product gains nothing from BLAS threads, which were measured
            # 7x slower than one core on a busy machine
            out[first : first + chunk] = np.einsum("ij,ij->i", np.einsum("ij,jk->ik", z, residual), z)
        return np.sqrt(np.maximum(out, 0.0), out=out)

    @classmethod
    def fit(
        cls,
        columns: dict[str, np.ndarray],
        hours: np.ndarray,
        start: int,
        slots: int,
        *,
        variance_explained: float,
        max_fit_rows: int = 100_000,
    ) -> "Reconstruction | None":
        """None when fewer than two features vary (nothing to reconstruct) or too few rows."""
        features = tuple(f for f, v in columns.items() if np.isfinite(v).sum() > 2 and np.nanstd(v[np.isfinite(v)]) > 0)
        if len(features) < 2:
            return None
        matrix = np.column_stack([columns[f] for f in features])
        mean = np.array([np.nanmean(matrix[:, i]) for i in range(len(features))])
        scale = np.array([np.nanstd(matrix[:, i]) for i in range(len(features))])
        step = max(len(matrix) // max_fit_rows, 1)  # a deterministic, evenly spread subset to fit on
        sample = matrix[::step]
        z = np.where(np.isfinite(sample), (sample - mean) / scale, 0.0)
        if len(z) < 3 * len(features):
            return None
        _, singular, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        explained = np.cumsum(singular**2) / np.sum(singular**2)
        k = min(int(np.searchsorted(explained, variance_explained) + 1), len(features) - 1)
        empty = HourlyAggregates(start, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 1)))
        partial = cls(features, mean, scale, vt[:k], empty, (start, start + slots))
        return replace(partial, hourly=partial.hourly_errors(columns, hours, start, slots))

    def hourly_errors(
        self, columns: dict[str, np.ndarray], hours: np.ndarray, start: int, slots: int
    ) -> HourlyAggregates:
        """The errors of the rows in ``columns`` (each row's epoch hour in ``hours``) per hour slot of the window."""
        matrix = np.column_stack([np.asarray(columns[f], dtype=float) for f in self.features])
        present = np.isfinite(matrix).any(axis=1)
        errors = self.matrix_errors(matrix)
        return HourlyAggregates.of(hours[present], errors, np.zeros(len(errors), dtype=np.int64), 1, start, slots)

    def coverage(self, start: int, slots: int) -> float:
        """The share of the window's hour slots [start, start + slots) inside the window the plane was fitted on."""
        inside = min(start + slots, self.fitted_on[1]) - max(start, self.fitted_on[0])
        return max(inside, 0) / slots if slots else 0.0

    def refolded(
        self, columns: dict[str, np.ndarray], hours: np.ndarray, start: int, slots: int, kept: np.ndarray
    ) -> "Reconstruction":
        """The same plane over the next window: the errors of the hours ``kept`` (per slot of the new window) taken
        from this one, the other hours' from the rows in ``columns`` (those hours only). Equal to
        ``hourly_errors`` over every row of the new window (to summation order): the plane is the same, so only
        the new hours' errors are computed, and the reference's errors and the current window's stay comparable."""
        return replace(self, hourly=self.hourly.folded(kept, self.hourly_errors(columns, hours, start, slots)))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}/features": np.array(self.features, dtype=str),
            f"{prefix}/mean": self.mean,
            f"{prefix}/scale": self.scale,
            f"{prefix}/components": self.components,
            f"{prefix}/fitted_on": np.array(self.fitted_on, dtype=np.int64),
            **self.hourly.arrays(f"{prefix}/hourly"),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], prefix: str) -> "Reconstruction":
        return cls(
            tuple(str(f) for f in data[f"{prefix}/features"]),
            data[f"{prefix}/mean"],
            data[f"{prefix}/scale"],
            data[f"{prefix}/components"],
            HourlyAggregates.from_arrays(data, f"{prefix}/hourly"),
            (int(data[f"{prefix}/fitted_on"][0]), int(data[f"{prefix}/fitted_on"][1])),
        )
