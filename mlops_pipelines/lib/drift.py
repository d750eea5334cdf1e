"""Drift statistics, current window vs reference window, per feature (the source of truth; Evidently only renders).

Numeric features: PSI over quantile bins of the reference, two-sample Kolmogorov-Smirnov statistic and its
asymptotic p-value (scipy's ``ks_2samp(method="asymp")``), mean shift in reference standard deviations,
variance ratio, missing-value share. Categorical features: PSI over categories and a chi-squared test of the
current counts against the reference proportions. A column that is empty, all missing, constant in the
reference, or has fewer rows than ``min_rows`` on either side gets that status and no drift statistic: it is
never reported as drift (RELIABILITY #11).
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4  # floor for bin shares in PSI, so an empty bin does not make it infinite
OK, EMPTY, CONSTANT, TOO_FEW = "ok", "empty", "constant", "too_few_rows"
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
    ref = np.clip(reference_share, EPSILON, None)
    cur = np.clip(current_share, EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (duplicates merged: a spike is one bin)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def binned_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def ks_2samp_asymp(a_sorted: np.ndarray, b_sorted: np.ndarray) -> tuple[float, float]:
    """The two-sided KS statistic from sorted samples, and its asymptotic p-value, as scipy computes them."""
    n, m = len(a_sorted), len(b_sorted)
    # Merge the two sorted samples (a stable sort of two sorted runs is a linear merge), then walk the pooled
    # order once: the empirical CDFs, compared at the last position of every run of equal values (ties).
    pooled = np.concatenate([a_sorted, b_sorted])
    order = np.argsort(pooled, kind="stable")
    from_a = order < n
    diff = np.cumsum(np.where(from_a, 1.0 / n, -1.0 / m))
    values = pooled[order]
    run_ends = np.append(values[1:] != values[:-1], True)
    statistic = float(np.max(np.abs(diff[run_ends])))
    en = n * m / (n + m)
    return statistic, float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0, 1))


def numeric_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *, bins: int = 10, min_rows: int = 30
) -> pd.DataFrame:
    """One row of statistics per numeric column."""
    ref_all = reference[list(columns)].to_numpy(dtype=float)
    cur_all = current[list(columns)].to_numpy(dtype=float)
    # sort every column at once; NaNs go last and are cut off per column
    ref_sorted, cur_sorted = np.sort(ref_all, axis=0), np.sort(cur_all, axis=0)
    ref_valid, cur_valid = np.isfinite(ref_all).sum(axis=0), np.isfinite(cur_all).sum(axis=0)
    rows = []
    for j, name in enumerate(columns):
        ref, cur = ref_sorted[: ref_valid[j], j], cur_sorted[: cur_valid[j], j]
        row = _base_row(name, "numeric", len(ref_all), len(cur_all), len(ref), len(cur))
        if len(ref) == 0 or len(cur) == 0:
            row["status"] = EMPTY
        elif len(ref) < min_rows or len(cur) < min_rows:
            row["status"] = TOO_FEW
        elif ref[0] == ref[-1]:
            row["status"] = CONSTANT
        else:
            edges = quantile_edges(ref, bins)
            ref_std = float(np.std(ref, ddof=1))
            row.update(
                psi=psi(binned_shares(ref, edges), binned_shares(cur, edges)),
                mean_shift_sd=float((cur.mean() - ref.mean()) / ref_std),
                variance_ratio=float(np.var(cur, ddof=1) / ref_std**2) if len(cur) > 1 else np.nan,
            )
            row["ks_statistic"], row["ks_pvalue"] = ks_2samp_asymp(ref, cur)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def categorical_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *, min_rows: int = 30
) -> pd.DataFrame:
    """PSI over categories (unseen ones included) and chi-squared of current counts vs reference shares."""
    rows = []
    for name in columns:
        ref, cur = reference[name].dropna().astype(str), current[name].dropna().astype(str)
        row = _base_row(name, "categorical", len(reference), len(current), len(ref), len(cur))
        if len(ref) == 0 or len(cur) == 0:
            row["status"] = EMPTY
        elif len(ref) < min_rows or len(cur) < min_rows:
            row["status"] = TOO_FEW
        elif ref.nunique() == 1 and set(cur.unique()) <= set(ref.unique()):
            row["status"] = CONSTANT
        else:
            categories = sorted(set(ref) | set(cur))
            ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
            cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
            ref_share = np.clip(ref_counts / ref_counts.sum(), EPSILON, None)
            expected = ref_share / ref_share.sum() * cur_counts.sum()
            chi2 = stats.chisquare(cur_counts, expected)
            row.update(
                psi=psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()),
                chi2_statistic=float(chi2.statistic),
                chi2_pvalue=float(chi2.pvalue),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


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
