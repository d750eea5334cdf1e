"""Drift statistics, current window vs reference window, per feature (the source of truth; Evidently only renders).

Numeric features: PSI over quantile bins of the reference, two-sample Kolmogorov-Smirnov statistic and its
asymptotic p-value (scipy's ``ks_2samp(method="asymp")``), mean shift in reference standard deviations,
variance ratio, missing-value share. Categorical features: PSI over categories and a chi-squared test of the
current counts against the reference proportions. A column that is empty, all missing, or has fewer rows than
``min_rows`` on either side gets that status and no drift statistic: it cannot be compared and is never
reported as drift. A column constant in the reference is ``constant`` while the current
window holds that same value only; once it holds anything else it is ``constant_reference_changed`` (a feature
that was flat in training moves in production), with the statistics that stay defined (PSI, KS; no mean shift
or variance ratio in reference standard deviations), and the policy reports it at its highest severity.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from mlops_pipelines.lib.monitoring.calibration import HourlyAggregates, Reconstruction

EPSILON = 1e-4  # floor for bin shares in PSI, so an empty bin does not make it infinite
OK, EMPTY, CONSTANT, TOO_FEW = "ok", "empty", "constant", "too_few_rows"
CONSTANT_CHANGED = "constant_reference_changed"
COMPARED = (OK, CONSTANT_CHANGED)  # statuses whose statistics say something about drift
COLUMNS = (
    "feature",
    "kind",
    "status",
    "n_reference",
    "n_current",
    "missing_share_reference",
    "missing_share_current",
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "mean_shift_sd",
    "variance_ratio",
    "chi2_statistic",
    "chi2_pvalue",
)


def psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    return float(psi_rows(reference_share, current_share))


def psi_rows(reference_share: np.ndarray, current_share: np.ndarray) -> np.ndarray:
    """PSI along the last axis (one value per row of shares: the blocks of a null distribution)."""
    ref = np.clip(reference_share, EPSILON, None)
    cur = np.clip(current_share, EPSILON, None)
    return np.sum((cur - ref) * np.log(cur / ref), axis=-1)


def quantile_edges(reference_sorted: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles, numpy's default (linear) interpolation read straight
    off the sorted sample; duplicates merged, so a spike is one bin."""
    position = np.linspace(0, 1, bins + 1)[1:-1] * (len(reference_sorted) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(reference_sorted) - 1)
    below, above = reference_sorted[low], reference_sorted[high]
    return np.unique(below + (above - below) * (position - low))


def psi_edges(reference_sorted: np.ndarray, bins: int = 10) -> np.ndarray:
    """The PSI bins of a numeric column: the reference's quantiles; for a flat reference, below, at and above
    its one value."""
    if reference_sorted[0] == reference_sorted[-1]:
        return np.array([reference_sorted[0], np.nextafter(reference_sorted[0], np.inf)])
    return quantile_edges(reference_sorted, bins)


def binned_shares(values_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin [edge_i-1, edge_i), from a sorted sample: one binary search per edge."""
    cumulative = np.searchsorted(values_sorted, edges, side="left")
    return np.diff(np.concatenate([[0], cumulative, [len(values_sorted)]])) / max(len(values_sorted), 1)


def ks_statistic(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """The two-sided KS statistic of two sorted samples without merging them. Both empirical CDFs are step
    functions, so the largest gap is at a distinct value of ``b`` (right limits) or just before one (left
    limits). ``b``'s own CDF there comes from its runs of equal values; ``a``'s from one binary search per
    distinct value of ``b`` (a second one only where ``a`` holds that exact value): O(m log n)."""
    n, m = len(a_sorted), len(b_sorted)
    starts = np.flatnonzero(np.concatenate([[True], b_sorted[1:] != b_sorted[:-1]]))  # first index of each run
    values, ends = b_sorted[starts], np.append(starts[1:], m)
    a_right = np.searchsorted(a_sorted, values, side="right")  # count of a <= value
    a_left = a_right.copy()  # count of a < value: the same unless a holds the value itself
    tied = (a_right > 0) & (a_sorted[a_right - 1] == values)
    a_left[tied] = np.searchsorted(a_sorted, values[tied], side="left")
    return float(max(np.max(np.abs(a_right / n - ends / m)), np.max(np.abs(a_left / n - starts / m))))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """The asymptotic p-value as scipy's ``ks_2samp(method="asymp")`` computes it."""
    return float(np.clip(stats.kstwo.sf(statistic, np.round(n * m / (n + m))), 0, 1))


def sorted_finite(columns: dict[str, np.ndarray], *, threads: int | None = None) -> dict[str, np.ndarray]:
    """Each column's finite values, sorted; columns on ``threads`` (numpy's sort releases the GIL)."""

    def one(values: np.ndarray) -> np.ndarray:
        finite = values[np.isfinite(values)]  # a copy: sorted in place
        finite.sort()
        return finite

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        return dict(zip(columns, pool.map(one, columns.values()), strict=True))


@dataclass(frozen=True)
class ReferenceProfile:
    """What drift needs of a reference window, computed once: the row count, each numeric column's finite
    values sorted, each categorical column's counts. The hourly job reuses it for every hour that shares the
    reference window (``save``/``load``: one ``.npz``, no pickle)."""

    rows: int
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, pd.Series] = field(default_factory=dict)
    # per column, its values per hour of the window (calibration.HourlyAggregates): the null distributions
    hourly: dict[str, "HourlyAggregates"] = field(default_factory=dict)
    # per view, its principal plane and the reference rows' reconstruction errors per hour (the multivariate signal)
    reconstruction: dict[str, "Reconstruction"] = field(default_factory=dict)
    # what the next reference window's profile is folded from (``reference_profiles``): the hour of each sorted
    # value, the window's per-hour fingerprints; saved and loaded as they are
    provenance: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        reference: pd.DataFrame,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        *,
        threads: int | None = None,
    ) -> "ReferenceProfile":
        columns = sorted_finite({name: reference[name].to_numpy(dtype=float) for name in numeric}, threads=threads)
        counts = {name: category_counts(reference[name]) for name in categorical}
        return cls(rows=len(reference), numeric=columns, categorical=counts)

    def sample(self, n: int) -> pd.DataFrame:
        """``n`` values per column spread evenly over the reference's distribution (evenly spaced ranks; category
        counts in proportion): a deterministic stand-in for the window, for plots and the Evidently report."""
        columns: dict[str, object] = {
            name: values[np.linspace(0, len(values) - 1, n).round().astype(int)] if len(values) else np.full(n, np.nan)
            for name, values in self.numeric.items()
        }
        for name, counts in self.categorical.items():
            repeats = np.round(counts.to_numpy() / max(int(counts.sum()), 1) * n).astype(int)
            values = np.repeat(counts.index.to_numpy(dtype=str), repeats)[:n]
            columns[name] = np.concatenate([values, np.full(n - len(values), None, dtype=object)])
        return pd.DataFrame(columns)

    def save(self, path: Path) -> None:
        arrays = {f"numeric/{name}": values for name, values in self.numeric.items()}
        for name, counts in self.categorical.items():
            arrays[f"categories/{name}"] = counts.index.to_numpy(dtype=str)
            arrays[f"counts/{name}"] = counts.to_numpy(dtype=np.int64)
        for name, agg in self.hourly.items():
            arrays.update(agg.arrays(f"hourly/{name}"))
        for name, plane in self.reconstruction.items():
            arrays.update(plane.arrays(f"reconstruction/{name}"))
        arrays.update({f"provenance/{name}": values for name, values in self.provenance.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{"rows": np.asarray(self.rows, dtype=np.int64), **arrays})
        tmp.replace(path)  # atomic: a reader never sees half a profile

    @classmethod
    def load(cls, path: Path) -> "ReferenceProfile":
        from mlops_pipelines.lib.monitoring.calibration import HourlyAggregates, Reconstruction  # builds on this one

        with np.load(path, allow_pickle=False) as data:
            numeric = {k.removeprefix("numeric/"): data[k] for k in data.files if k.startswith("numeric/")}
            categorical = {
                k.removeprefix("counts/"): pd.Series(data[k], index=data[k.replace("counts/", "categories/", 1)])
                for k in data.files
                if k.startswith("counts/")
            }
            arrays = {k: data[k] for k in data.files if k.startswith(("hourly/", "reconstruction/"))}
            provenance = {k.removeprefix("provenance/"): data[k] for k in data.files if k.startswith("provenance/")}
            rows = int(data["rows"])
        hourly = {
            k.split("/")[1]: HourlyAggregates.from_arrays(arrays, f"hourly/{k.split('/')[1]}")
            for k in arrays
            if k.startswith("hourly/") and k.endswith("/meta")
        }
        planes = {
            k.split("/")[1]: Reconstruction.from_arrays(arrays, f"reconstruction/{k.split('/')[1]}")
            for k in arrays
            if k.startswith("reconstruction/") and k.endswith("/features")
        }
        return cls(rows, numeric, categorical, hourly, planes, provenance)


def compare(
    profile: ReferenceProfile, current: pd.DataFrame, *, bins: int = 10, min_rows: int = 30, threads: int | None = None
) -> pd.DataFrame:
    """One row of statistics per column of the profile: numeric columns first, then categorical ones.
    Numeric columns are independent and run on ``threads`` (default: one per core)."""

    def numeric_row(name: str) -> dict[str, object]:
        ref = profile.numeric[name]
        cur_all = current[name].to_numpy(dtype=float)
        cur = np.sort(cur_all[np.isfinite(cur_all)])
        row = _base_row(name, "numeric", profile.rows, len(cur_all), len(ref), len(cur))
        if len(ref) == 0 or len(cur) == 0:
            row["status"] = EMPTY
        elif len(ref) < min_rows or len(cur) < min_rows:
            row["status"] = TOO_FEW
        elif ref[0] == ref[-1] and cur[0] == cur[-1] == ref[0]:
            row["status"] = CONSTANT  # flat in both windows, at the same value: nothing moved
        else:
            flat = ref[0] == ref[-1]  # then three bins: below, at and above the reference's one value
            edges = psi_edges(ref, bins)
            statistic = ks_statistic(ref, cur)
            row.update(
                psi=psi(binned_shares(ref, edges), binned_shares(cur, edges)),
                ks_statistic=statistic,
                ks_pvalue=ks_pvalue(statistic, len(ref), len(cur)),
            )
            if flat:
                row["status"] = CONSTANT_CHANGED  # no spread to measure a shift in
            else:
                ref_std = float(np.std(ref, ddof=1))
                row.update(
                    mean_shift_sd=float((cur.mean() - ref.mean()) / ref_std),
                    variance_ratio=float(np.var(cur, ddof=1) / ref_std**2) if len(cur) > 1 else np.nan,
                )
        return row

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        rows = list(pool.map(numeric_row, profile.numeric))
    rows += [
        categorical_row(name, counts, profile.rows, current[name], min_rows)
        for name, counts in profile.categorical.items()
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def numeric_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *, bins: int = 10, min_rows: int = 30
) -> pd.DataFrame:
    """One row of statistics per numeric column (a profile of ``reference``, then ``compare``)."""
    return compare(ReferenceProfile.of(reference, columns), current, bins=bins, min_rows=min_rows)


def categorical_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *, min_rows: int = 30
) -> pd.DataFrame:
    return compare(ReferenceProfile.of(reference, categorical=columns), current, min_rows=min_rows)


def category_counts(values: pd.Series) -> pd.Series:
    """Counts per category as text (missing values left out): counted first, then the few labels converted."""
    counts = values.value_counts(dropna=True)
    return counts.groupby(counts.index.astype(str)).sum()


def categorical_row(
    name: str, ref_counts_by_category: pd.Series, ref_rows: int, current: pd.Series, min_rows: int
) -> dict[str, object]:
    """PSI over categories (unseen ones included) and chi-squared of current counts vs reference shares."""
    cur_counts_by_category = category_counts(current)
    n_ref, n_cur = int(ref_counts_by_category.sum()), int(cur_counts_by_category.sum())
    row = _base_row(name, "categorical", ref_rows, len(current), n_ref, n_cur)
    seen, now = set(ref_counts_by_category.index), set(cur_counts_by_category.index)
    if n_ref == 0 or n_cur == 0:
        row["status"] = EMPTY
    elif n_ref < min_rows or n_cur < min_rows:
        row["status"] = TOO_FEW
    elif len(seen) == 1 and now <= seen:
        row["status"] = CONSTANT
    else:
        categories = sorted(seen | now)
        ref_counts = ref_counts_by_category.reindex(categories, fill_value=0).to_numpy(dtype=float)
        cur_counts = cur_counts_by_category.reindex(categories, fill_value=0).to_numpy(dtype=float)
        ref_share = np.clip(ref_counts / ref_counts.sum(), EPSILON, None)
        expected = ref_share / ref_share.sum() * cur_counts.sum()
        chi2 = stats.chisquare(cur_counts, expected)
        row.update(
            status=CONSTANT_CHANGED if len(seen) == 1 else OK,
            psi=psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()),
            chi2_statistic=float(chi2.statistic),
            chi2_pvalue=float(chi2.pvalue),
        )
    return row


def _base_row(name: str, kind: str, n_ref_rows: int, n_cur_rows: int, n_ref: int, n_cur: int) -> dict[str, object]:
    return {
        "feature": name,
        "kind": kind,
        "status": OK,
        "n_reference": n_ref,
        "n_current": n_cur,
        "missing_share_reference": 1 - n_ref / n_ref_rows if n_ref_rows else np.nan,
        "missing_share_current": 1 - n_cur / n_cur_rows if n_cur_rows else np.nan,
        **{c: np.nan for c in COLUMNS[7:]},
    }
