"""A model's feature-drift report for one window: statistics, severities, the rows that persist, a picture."""

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mlops_pipelines.lib.core.warehouse import quote_ident, quote_table, table_exists
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView
from mlops_pipelines.lib.monitoring import concept_drift, drift, drift_policy, prediction_log
from mlops_pipelines.lib.training.model_specs import ModelSpec

REPORTS_TABLE = "monitoring.model_drift_reports"
PREDICTION_REPORTS_TABLE = "monitoring.prediction_drift_reports"
PREDICTION = "prediction"


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    reference_start: datetime
    reference_end: datetime
    stats: pd.DataFrame  # drift.COLUMNS + severity
    severity: str
    reference: drift.ReferenceProfile
    current: pd.DataFrame

    def rows(self, partition_key: str) -> pd.DataFrame:
        out = self.stats.assign(
            model=self.model,
            version=self.version,
            partition_key=partition_key,
            window_start=self.window_start,
            window_end=self.window_end,
            reference_start=self.reference_start,
            reference_end=self.reference_end,
            model_severity=self.severity,
        )
        for column in ("window_start", "window_end", "reference_start", "reference_end"):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
        return out

    def worst(self, n: int = 5) -> pd.DataFrame:
        rank = self.stats.assign(_order=self.stats["severity"].map({"SEVERE": 0, "MODERATE": 1, "NORMAL": 2}))
        return rank.sort_values(["_order", "psi"], ascending=[True, False]).drop(columns="_order").head(n)


def view_columns(
    conn: duckdb.DuckDBPyConnection, view: FeatureView, columns: list[str], start: datetime, end: datetime
) -> dict[str, np.ndarray]:
    """Columns of the view's rows whose event time is in [start, end), as arrays (numeric ones as float with
    NaN for NULL): no DataFrame is built, since drift works column by column."""
    selected, event = ", ".join(quote_ident(c) for c in columns), quote_ident(view.event_time)
    arrays = conn.execute(
        f"SELECT {selected} FROM {quote_table(view.table)} WHERE {event} >= ? AND {event} < ?",
        [start, end],
    ).fetchnumpy()
    return {c: _unmasked(v, float if view.schema_[c] == "DOUBLE" else object) for c, v in arrays.items()}


def _unmasked(values: object, dtype: type) -> np.ndarray:
    """DuckDB returns a masked array when a column has NULLs: NaN (numbers) or None (text) in their place."""
    mask = np.ma.getmaskarray(values)  # type: ignore[arg-type]
    out = np.asarray(np.ma.getdata(values), dtype=dtype)  # type: ignore[arg-type]
    if mask.any():
        out = out.copy()
        out[mask] = np.nan if dtype is float else None
    return out


def model_columns(spec: ModelSpec, catalog: FeatureCatalog, view: FeatureView) -> list[str]:
    return [f for f in view.features if f in spec.features(catalog) or f == "sector"]


Memo = dict[tuple[str, str, datetime, datetime], Any]  # what one run already read, for the next model


def feature_frame(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    start: datetime,
    end: datetime,
    memo: Memo | None = None,
) -> pd.DataFrame:
    """The model's features for rows whose event time is in [start, end), one view at a time (no join needed:
    drift is per feature). With ``memo``, each view's window is read once for every model that uses it."""
    memo = {} if memo is None else memo
    columns: dict[str, np.ndarray] = {}
    for name in spec.feature_views:
        view = catalog.views[name]
        key = ("columns", view.table, start, end)
        if key not in memo:
            memo[key] = view_columns(conn, view, list(view.features), start, end)
        columns.update({c: memo[key][c] for c in model_columns(spec, catalog, view)})
    return pd.DataFrame(columns)


def reference_window(window_start: datetime, reference: timedelta) -> tuple[datetime, datetime]:
    """The reference ends at the start of the current window's first UTC day, so that the 24 hourly runs of a
    day share one reference window (and its cached profile)."""
    end = window_start.replace(hour=0, minute=0, second=0, microsecond=0)
    return end - reference, end


def window_fingerprint(conn: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime) -> str:
    """Row count and an order-independent hash of the view's rows in the window: a re-materialized view changes
    it, so a cached profile is never used for data it was not computed from."""
    event = quote_ident(view.event_time)
    [(count, digest)] = conn.execute(
        f"SELECT count(*), coalesce(sum(hash(row_)::HUGEINT), 0) FROM {quote_table(view.table)} AS row_ "
        f"WHERE {event} >= ? AND {event} < ?",
        [start, end],
    ).fetchall()
    return hashlib.sha256(f"{view.table}:{count}:{digest}".encode()).hexdigest()[:16]


def view_profile(
    conn: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime, cache_dir: Path | None
) -> drift.ReferenceProfile:
    """Every feature of one view over [start, end): from ``cache_dir`` when this exact window content was
    profiled before (by any model: they share views), else from the warehouse, then cached (3 newest kept)."""
    path = None
    if cache_dir is not None:
        key = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}-{window_fingerprint(conn, view, start, end)}"
        path = cache_dir / view.table / f"{key}.npz"
        if path.exists():
            return drift.ReferenceProfile.load(path)
    numeric = [f for f in view.features if view.schema_[f] == "DOUBLE"]
    categorical = [f for f in view.features if f not in numeric]
    arrays = view_columns(conn, view, numeric, start, end)
    event = quote_ident(view.event_time)
    counts = {
        name: pd.Series(
            dict(
                conn.execute(
                    f"SELECT CAST({quote_ident(name)} AS VARCHAR), count(*) FROM {quote_table(view.table)} "
                    f"WHERE {event} >= ? AND {event} < ? AND {quote_ident(name)} IS NOT NULL GROUP BY 1",
                    [start, end],
                ).fetchall()
            ),
            dtype="int64",
        )
        for name in categorical
    }
    [(rows,)] = conn.execute(
        f"SELECT count(*) FROM {quote_table(view.table)} WHERE {event} >= ? AND {event} < ?",
        [start, end],
    ).fetchall()
    profile = drift.ReferenceProfile(rows=rows, numeric=drift.sorted_finite(arrays), categorical=counts)
    if path is not None:
        profile.save(path)
        for stale in sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime)[:-3]:
            stale.unlink(missing_ok=True)
    return profile


def reference_profile(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    start: datetime,
    end: datetime,
    cache_dir: Path | None,
    memo: Memo | None = None,
) -> drift.ReferenceProfile:
    """The model's reference profile: its features' part of each of its views' profiles. (Views share the
    entity and time grid, so their row counts agree; the largest is kept.)"""
    memo = {} if memo is None else memo
    profiles = []
    for name in spec.feature_views:
        view = catalog.views[name]
        key = ("profile", view.table, start, end)
        if key not in memo:
            memo[key] = view_profile(conn, view, start, end, cache_dir)
        profiles.append((view, memo[key]))
    wanted = {c for view, _ in profiles for c in model_columns(spec, catalog, view)}
    return drift.ReferenceProfile(
        rows=max((p.rows for _, p in profiles), default=0),
        numeric={c: v for _, p in profiles for c, v in p.numeric.items() if c in wanted},
        categorical={c: v for _, p in profiles for c, v in p.categorical.items() if c in wanted},
    )


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
        severity=str(stats["severity"].iloc[0]),
        reference=profile,
        current=scored["current"],
    )


def histograms_png(report: DriftReport, features: list[str]) -> bytes:
    """Reference vs current distributions of the given numeric features, side by side."""
    features = [f for f in features if f in report.reference.numeric]
    fig = Figure(figsize=(4 * max(len(features), 1), 3))
    FigureCanvasAgg(fig)
    for i, feature in enumerate(features):
        ax = fig.add_subplot(1, len(features), i + 1)
        ref, cur = report.reference.numeric[feature], report.current[feature].dropna().to_numpy()
        if len(ref) and len(cur):
            # counts computed here (the reference is sorted: one binary search per edge), only bars drawn
            edges = np.linspace(min(ref[0], cur.min()), max(ref[-1], cur.max()), 41)
            ref_counts = np.diff(np.searchsorted(ref, edges, side="right"))
            ref_counts[0] += np.searchsorted(ref, edges[0], side="right")  # values equal to the first edge
            cur_counts, _ = np.histogram(cur, bins=edges)
            width = np.diff(edges)
            for counts, label in ((ref_counts, "reference"), (cur_counts, "current")):
                ax.stairs(counts / counts.sum() / width, edges, fill=True, alpha=0.5, label=label)
        severity = report.stats.set_index("feature").loc[feature, "severity"]
        ax.set_title(f"{feature} ({severity})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{report.model} v{report.version}: {report.window_start:%Y-%m-%d %H:%M} .. "
        f"{report.window_end:%Y-%m-%d %H:%M} UTC",
        fontsize=10,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def monitored_severity(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> str | None:
    """The model severity of the latest hourly monitoring report of this version; None if never monitored."""
    if not table_exists(conn, REPORTS_TABLE):
        return None
    row = conn.execute(
        f"SELECT model_severity FROM {REPORTS_TABLE} WHERE model = ? AND version = ? ORDER BY window_end DESC LIMIT 1",
        [model, version],
    ).fetchone()
    return str(row[0]) if row else None


def severity_timeline(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """One row per model and monitored hour, oldest first: the monitored version, the feature-drift and
    prediction-drift severities and the performance status of that hour (None where that asset did not run)."""
    if not table_exists(conn, REPORTS_TABLE):
        return []
    joined = {
        "prediction_drift": (PREDICTION_REPORTS_TABLE, "model_severity"),
        "performance": (concept_drift.PERFORMANCE_TABLE, "model_status"),
    }
    columns, joins = [], []
    for i, (name, (table, column)) in enumerate(joined.items()):
        if table_exists(conn, table):
            columns.append(f"any_value(j{i}.{column}) AS {name}")
            joins.append(f"LEFT JOIN {table} j{i} USING (partition_key, model)")
        else:
            columns.append(f"NULL AS {name}")
    cursor = conn.execute(
        f"""SELECT d.model, d.version, d.partition_key AS hour, any_value(d.model_severity) AS feature_drift,
                   {", ".join(columns)}
            FROM {REPORTS_TABLE} d {" ".join(joins)}
            GROUP BY ALL ORDER BY d.model, d.partition_key"""
    )
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
