"""A drift report: one model's distributions over a window against its reference window, the statistics and
severities per column and for the model. ``build_report`` compares the model's features (hourly monitoring and
the promotion gate), ``build_prediction_report`` the version's outputs (prediction drift). Where the rows come
from: ``reference_profiles``; where reports are stored: ``feature_drift`` and ``prediction_drift``."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import calibration, drift, drift_policy, prediction_log
from mlops_pipelines.lib.monitoring.reference_profiles import (
    Memo,
    feature_frame,
    reference_profile,
    reference_window,
    view_windows,
)
from mlops_pipelines.lib.monitoring.severity import Severity
from mlops_pipelines.lib.training.model_specs import ModelSpec

PREDICTION = "prediction"  # the one column of a prediction-drift report
# Columns added by the calibrated severity (an older table gets them with ``ALTER TABLE ... ADD COLUMN``):
# how many reference windows made the limits, the window's effective sample size, the limits, why, the
# reconstruction error ratio of a view (rows of kind ``multivariate``), the feature's importance share and the
# model's rule in words.
ADDED_COLUMNS = {
    "null_windows": "BIGINT",
    "n_effective": "DOUBLE",
    "psi_moderate": "DOUBLE",
    "psi_severe": "DOUBLE",
    "mean_shift_moderate": "DOUBLE",
    "mean_shift_severe": "DOUBLE",
    "variance_factor_moderate": "DOUBLE",
    "variance_factor_severe": "DOUBLE",
    "reconstruction_error_ratio": "DOUBLE",
    "importance": "DOUBLE",
    "reason": "VARCHAR",
    "window_hours": "BIGINT",
    "model_rule": "VARCHAR",
}
# The columns of ``DriftReport.rows``: one row per column compared, stored by the tables of feature drift and of
# prediction drift (every raw statistic, so thresholds can be re-tuned from history).
ROWS_DDL = (
    """
    feature VARCHAR, kind VARCHAR, status VARCHAR, n_reference BIGINT, n_current BIGINT,
    missing_share_reference DOUBLE, missing_share_current DOUBLE, psi DOUBLE, ks_statistic DOUBLE,
    ks_pvalue DOUBLE, mean_shift_sd DOUBLE, variance_ratio DOUBLE, chi2_statistic DOUBLE, chi2_pvalue DOUBLE,
    severity VARCHAR, model VARCHAR, version VARCHAR, partition_key VARCHAR,
    window_start TIMESTAMP WITH TIME ZONE, window_end TIMESTAMP WITH TIME ZONE,
    reference_start TIMESTAMP WITH TIME ZONE, reference_end TIMESTAMP WITH TIME ZONE, model_severity VARCHAR
"""
    + ", "
    + ", ".join(f"{name} {kind}" for name, kind in ADDED_COLUMNS.items())
)


def store_rows(conn: duckdb.DuckDBPyConnection, table: str, report: "DriftReport", partition_key: str) -> None:
    """The report's rows (``ROWS_DDL``) for this partition and model in ``table``, its owner's, replacing a previous
    run's; a table created before the calibrated severity gets its ``ADDED_COLUMNS`` first (NULL in older rows)."""
    if warehouse.table_exists(conn, table):
        for name, kind in ADDED_COLUMNS.items():
            conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
    warehouse.replace_rows(
        conn,
        table,
        report.rows(partition_key),
        where="partition_key = ? AND model = ?",
        params=[partition_key, report.model],
        create_sql=ROWS_DDL,
    )


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    reference_start: datetime
    reference_end: datetime
    stats: pd.DataFrame  # drift.COLUMNS + severity (+ the calibrated judgement's ADDED_COLUMNS, feature drift)
    severity: Severity
    reference: drift.ReferenceProfile
    current: pd.DataFrame
    rule: str = ""  # the model's verdict in words: which rule fired, with which shares

    @property
    def current_rows(self) -> int:
        """Rows in the current window (0: no data yet for it)."""
        return len(self.current)

    def rows(self, partition_key: str) -> pd.DataFrame:
        """What persists (``ROWS_DDL``): the statistics of every column, with the window and the verdicts."""
        out = self.stats.assign(
            severity=self.stats["severity"].astype(str),
            model=self.model,
            version=self.version,
            partition_key=partition_key,
            window_start=self.window_start,
            window_end=self.window_end,
            reference_start=self.reference_start,
            reference_end=self.reference_end,
            model_severity=str(self.severity),
            window_hours=window_hours(self.window_end - self.window_start),
            model_rule=self.rule,
        )
        for column in ("window_start", "window_end", "reference_start", "reference_end"):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
        typed: dict[str, Any] = {"BIGINT": "Int64", "DOUBLE": "float64", "VARCHAR": "string"}
        for column, kind in ADDED_COLUMNS.items():  # every declared column, typed (NULL where not judged)
            values = out[column] if column in out else pd.Series(None, index=out.index, dtype=object)
            out[column] = pd.to_numeric(values) if kind != "VARCHAR" else values
            out[column] = out[column].astype(typed[kind])
        return out

    def worst(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` most drifted columns (features, not the views' reconstructions): the most severe first, then
        by PSI."""
        columns = self.stats[self.stats["kind"] != drift_policy.MULTIVARIATE]
        rank = columns.assign(_order=[Severity(s).code for s in columns["severity"]])
        return rank.sort_values(["_order", "psi"], ascending=[False, False]).drop(columns="_order").head(n)


def window_hours(length: timedelta) -> int:
    """A window's length in hour slots (a partial hour counts as one)."""
    return max(int(-(-length // timedelta(hours=1))), 1)


def judge(
    stats: pd.DataFrame,
    profile: drift.ReferenceProfile,
    views: dict[str, dict[str, np.ndarray]],
    features_by_view: dict[str, list[str]],
    groups: dict[str, str | None],
    policy: drift_policy.DriftPolicy,
    importance: drift_policy.Importance,
    hours: int,
    errors: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, Severity, str]:
    """The statistics of each feature with its calibrated judgement, a row per view for its reconstruction error,
    the importance shares, and the model's verdict with its rule. ``errors``: the window's reconstruction errors
    per view when already computed (the models sharing a view), else computed here."""
    cal = policy.calibration
    model_features = [f for fs in features_by_view.values() for f in fs]
    weights = drift_policy.importance_weights(importance, model_features)
    judged = []
    for row in stats.to_dict("records"):
        agg = profile.hourly.get(row["feature"])
        limits = None if agg is None else calibration.Thresholds.of(agg, hours, cal.quantiles, cal.min_rows)
        floors = policy.thresholds(row["feature"], groups.get(row["feature"]))
        verdict = drift_policy.judge_feature(row, floors, limits, cal, hours)
        judged.append(
            {"severity": verdict.severity, **verdict.columns(), "importance": weights.get(row["feature"], 0.0)}
        )
    out = pd.concat([stats.reset_index(drop=True), pd.DataFrame(judged)], axis=1)
    out["reconstruction_error_ratio"] = np.nan
    rows = []
    for view, plane in profile.reconstruction.items():
        if view not in views:
            continue
        view_errors = errors[view] if errors is not None and view in errors else plane.errors(views[view])
        limits = calibration.RatioThresholds.of(plane.hourly, hours, cal.quantiles, cal.min_rows)
        n = len(view_errors)
        ratio = float(view_errors.mean() / limits.mean(plane.hourly)) if n else float("nan")
        verdict = drift_policy.judge_reconstruction(ratio, n, limits, policy)
        status = drift.EMPTY if not n else drift.TOO_FEW if n < cal.min_rows else drift.OK
        rows.append(
            {
                "feature": f"reconstruction:{view}",
                "kind": drift_policy.MULTIVARIATE,
                "status": status,
                "n_reference": int(plane.hourly.count.sum()),
                "n_current": n,
                "severity": verdict.severity,
                **verdict.columns(),
                "reconstruction_error_ratio": ratio,
                "importance": sum(weights.get(f, 0.0) for f in features_by_view.get(view, [])),
            }
        )
    if rows:
        out = pd.concat([out, pd.DataFrame(rows).reindex(columns=out.columns)], ignore_index=True)
    severity, rule = drift_policy.model_verdict(out, policy)
    return out, severity, rule


def _compare_once(
    profile: drift.ReferenceProfile, current: pd.DataFrame, min_rows: int, memo: Memo, window: tuple[Any, ...]
) -> pd.DataFrame:
    """``drift.compare``, each column's row computed once per run (``memo``) for the models that share it."""
    key = ("stats", *window, profile.rows, len(current), min_rows)
    names = [*profile.numeric, *profile.categorical]
    todo = [c for c in names if (*key, c) not in memo]
    if todo:
        wanted = set(todo)
        part = drift.ReferenceProfile(
            profile.rows,
            {c: v for c, v in profile.numeric.items() if c in wanted},
            {c: v for c, v in profile.categorical.items() if c in wanted},
        )
        for row in drift.compare(part, current[todo], min_rows=min_rows).to_dict("records"):
            memo[(*key, row["feature"])] = row
    return pd.DataFrame([memo[(*key, c)] for c in names], columns=list(drift.COLUMNS))


def build_report(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    policy: drift_policy.DriftPolicy,
    importance: drift_policy.Importance,
    *,
    window_end: datetime,
    current: timedelta,
    reference: timedelta,
    profile_cache: Path | None = None,
    memo: Memo | None = None,
    reference_end: datetime | None = None,
) -> DriftReport:
    """The model's features over [window_end - current, window_end) against ``reference`` before
    ``reference_end`` (default: the start of the current window's first UTC day, as hourly monitoring uses),
    judged against the reference's own windows of the same length (``calibration``). ``importance``: the
    training manifest's ``feature_importance`` ({feature: gain} or [(feature, gain), ...]) or a list of names
    (equal weights)."""
    window_start = window_end - current
    if reference_end is None:
        reference_start, reference_end = reference_window(window_start, reference)
    else:
        reference_start = reference_end - reference
    memo = {} if memo is None else memo
    explained = policy.reconstruction.variance_explained
    profile = reference_profile(conn, spec, catalog, reference_start, reference_end, profile_cache, memo, explained)
    views = view_windows(conn, spec, catalog, window_start, window_end, memo)
    cur = feature_frame(conn, spec, catalog, window_start, window_end, memo)
    window = (reference_start, reference_end, window_start, window_end)
    stats = _compare_once(profile, cur, policy.calibration.min_rows, memo, window)
    groups = {
        f: catalog.views[v].tags.get("drift_group") for v in spec.feature_views for f in catalog.views[v].features
    }
    model_features = set(spec.features(catalog))
    by_view = {v: [f for f in catalog.views[v].features if f in model_features] for v in spec.feature_views}
    errors = {}  # each view's reconstruction errors over the window, computed once for the models sharing it
    for view, plane in profile.reconstruction.items():
        key = ("errors", view, reference_start, reference_end, window_start, window_end, explained)
        if view in views and key not in memo:
            memo[key] = plane.errors(views[view])
        if key in memo:
            errors[view] = memo[key]
    hours = window_hours(current)
    stats, severity, rule = judge(stats, profile, views, by_view, groups, policy, importance, hours, errors)
    return DriftReport(
        model=spec.name,
        version=version,
        window_start=window_start,
        window_end=window_end,
        reference_start=reference_start,
        reference_end=reference_end,
        stats=stats,
        severity=severity,
        reference=profile,
        current=cur,
        rule=rule,
    )


def build_prediction_report(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    policy: drift_policy.DriftPolicy,
    booster: lgb.Booster,
    *,
    window_end: datetime,
    current: timedelta,
    reference: timedelta,
    max_reference_rows: int,
) -> DriftReport:
    """The version's outputs on the current window's decisions vs on (a deterministic subset of) the reference
    window's: the same statistics as a feature, judged by the model's ``predictions`` thresholds."""
    window_start = window_end - current
    reference_start, reference_end = reference_window(window_start, reference)
    scored = {  # the decisions stay in the warehouse: only the outputs come out
        "current": prediction_log.window_scores(conn, spec, version, catalog, booster, window_start, window_end),
        "reference": prediction_log.window_scores(
            conn, spec, version, catalog, booster, reference_start, reference_end, max_rows=max_reference_rows
        ),
    }
    profile = drift.ReferenceProfile.of(scored["reference"], [PREDICTION])
    stats = drift.compare(profile, scored["current"])
    limits = policy.prediction_thresholds(spec.name)
    stats["severity"] = [drift_policy.feature_severity(row, limits) for row in stats.to_dict("records")]
    return DriftReport(
        model=spec.name,
        version=version,
        window_start=window_start,
        window_end=window_end,
        reference_start=reference_start,
        reference_end=reference_end,
        stats=stats,
        severity=Severity(stats["severity"].iloc[0]),
        reference=profile,
        current=scored["current"],
    )
