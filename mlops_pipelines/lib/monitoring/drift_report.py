"""A drift report: one model's distributions over a window against its reference window, the statistics and
severities per column and for the model. ``build_report`` compares the model's features (hourly monitoring and
the promotion gate), ``build_prediction_report`` the version's outputs (prediction drift). Where the rows come
from: ``reference_profiles``; where reports are stored: ``feature_drift`` and ``prediction_drift``."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import lightgbm as lgb
import pandas as pd

from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import drift, drift_policy, prediction_log
from mlops_pipelines.lib.monitoring.reference_profiles import Memo, feature_frame, reference_profile, reference_window
from mlops_pipelines.lib.monitoring.severity import Severity
from mlops_pipelines.lib.training.model_specs import ModelSpec

PREDICTION = "prediction"  # the one column of a prediction-drift report
# The columns of ``DriftReport.rows``: one row per column compared, stored by the tables of feature drift and of
# prediction drift (every raw statistic, so thresholds can be re-tuned from history).
ROWS_DDL = """
    feature VARCHAR, kind VARCHAR, status VARCHAR, n_reference BIGINT, n_current BIGINT,
    missing_share_reference DOUBLE, missing_share_current DOUBLE, psi DOUBLE, ks_statistic DOUBLE,
    ks_pvalue DOUBLE, mean_shift_sd DOUBLE, variance_ratio DOUBLE, chi2_statistic DOUBLE, chi2_pvalue DOUBLE,
    severity VARCHAR, model VARCHAR, version VARCHAR, partition_key VARCHAR,
    window_start TIMESTAMP WITH TIME ZONE, window_end TIMESTAMP WITH TIME ZONE,
    reference_start TIMESTAMP WITH TIME ZONE, reference_end TIMESTAMP WITH TIME ZONE, model_severity VARCHAR
"""


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    reference_start: datetime
    reference_end: datetime
    stats: pd.DataFrame  # drift.COLUMNS + severity
    severity: Severity
    reference: drift.ReferenceProfile
    current: pd.DataFrame

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
        )
        for column in ("window_start", "window_end", "reference_start", "reference_end"):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
        return out

    def worst(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` most drifted columns: the most severe first, then by PSI."""
        rank = self.stats.assign(_order=[Severity(s).code for s in self.stats["severity"]])
        return rank.sort_values(["_order", "psi"], ascending=[False, False]).drop(columns="_order").head(n)


def build_report(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    policy: drift_policy.DriftPolicy,
    importance: list[str],
    *,
    window_end: datetime,
    current: timedelta,
    reference: timedelta,
    profile_cache: Path | None = None,
    memo: Memo | None = None,
    reference_end: datetime | None = None,
) -> DriftReport:
    """The model's features over [window_end - current, window_end) against ``reference`` before
    ``reference_end`` (default: the start of the current window's first UTC day, as hourly monitoring uses)."""
    window_start = window_end - current
    if reference_end is None:
        reference_start, reference_end = reference_window(window_start, reference)
    else:
        reference_start = reference_end - reference
    profile = reference_profile(conn, spec, catalog, reference_start, reference_end, profile_cache, memo)
    cur = feature_frame(conn, spec, catalog, window_start, window_end, memo)
    stats = drift.compare(profile, cur)
    groups = {
        f: catalog.views[v].tags.get("drift_group") for v in spec.feature_views for f in catalog.views[v].features
    }
    stats["severity"] = drift_policy.classify(stats, policy, groups)
    severity = drift_policy.model_severity(drift_policy.comparable_severities(stats), importance, policy)
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
    scored = {
        name: prediction_log.logged_scores(conn, spec, version, catalog, booster, rows)[[PREDICTION]]
        for name, rows in (
            ("current", prediction_log.decision_rows(conn, spec, window_start, window_end)),
            (
                "reference",
                prediction_log.decision_rows(conn, spec, reference_start, reference_end, max_rows=max_reference_rows),
            ),
        )
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
