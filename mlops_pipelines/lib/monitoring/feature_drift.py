"""Hourly feature drift of the deployed versions, and the table that keeps it: ``monitoring.model_drift_reports``
(owned here: its name, columns, writes and reads; everyone else calls these functions).

Per version: its features over the current window against the reference profile (``drift_report.build_report``),
the rows persisted (one set per partition and model, a re-run replaces it), the verdict in the status file the
retraining sensor reads (an INSUFFICIENT window never replaces a verdict there), an Evidently HTML report when it
is MODERATE or SEVERE, an alert when it is SEVERE. An hour whose window holds no rows yet (the schedule ticking
past the data) writes nothing: it is noted for the operator and the last verdict stands."""

import json
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.alerts import Alert, Alerter
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import drift_status
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy, Importance
from mlops_pipelines.lib.monitoring.drift_report import ROWS_DDL, DriftReport, build_report, store_rows
from mlops_pipelines.lib.monitoring.evidently_report import write_html_report
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow, MonitoringFiles
from mlops_pipelines.lib.monitoring.reference_profiles import Memo
from mlops_pipelines.lib.monitoring.severity import Severity

TABLE = "monitoring.model_drift_reports"
DDL = ROWS_DDL  # one row per feature, partition and model


def write_report(conn: duckdb.DuckDBPyConnection, report: DriftReport, partition_key: str) -> None:
    """The report's rows for this partition and model, replacing a previous run's."""
    store_rows(conn, TABLE, report, partition_key)


def latest_severity(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> Severity | None:
    """The latest verdict of this version's hourly reports: the latest judged one (an INSUFFICIENT window says
    nothing and never hides it); INSUFFICIENT when no window could be judged; None if never monitored."""
    if not warehouse.table_exists(conn, TABLE):
        return None
    row = conn.execute(
        f"SELECT model_severity FROM {TABLE} WHERE model = ? AND version = ? "
        "ORDER BY model_severity = ? ASC, window_end DESC LIMIT 1",
        [model, version, str(Severity.INSUFFICIENT)],
    ).fetchone()
    return Severity(row[0]) if row else None


def verdicts(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per model and partition: ``model, version, partition_key, window_end, severity``."""
    if not warehouse.table_exists(conn, TABLE):
        return pd.DataFrame(columns=["model", "version", "partition_key", "window_end", "severity"])
    return conn.execute(
        f"SELECT model, any_value(version) AS version, partition_key, max(window_end) AS window_end, "
        f"any_value(model_severity) AS severity FROM {TABLE} GROUP BY model, partition_key "
        "ORDER BY model, partition_key"
    ).fetchdf()


@dataclass(frozen=True)
class FeatureDriftRun:
    reports: list[DriftReport]
    evidently: dict[str, str] = field(default_factory=dict)  # model -> HTML path (or why it was not rendered)
    notes: list[str] = field(default_factory=list)  # for the operator's log


def model_importance(tracking: Tracking, model: DeployedVersion, catalog: FeatureCatalog) -> Importance:
    """The version's feature importance (its training manifest's ``feature_importance``: {feature: gain} or
    [(feature, gain), ...]), else the spec's features (equal weights)."""
    manifest = json.loads(tracking.read_text_artifact(model.run_id, "manifest.json")) if model.run_id else {}
    return manifest.get("feature_importance") or model.spec.features(catalog)


def monitor_feature_drift(
    conn: duckdb.DuckDBPyConnection,
    deployed: list[DeployedVersion],
    window: HourlyWindow,
    *,
    catalog: FeatureCatalog,
    policy: DriftPolicy,
    tracking: Tracking,
    files: MonitoringFiles,
    alerter: Alerter,
) -> FeatureDriftRun:
    """Judge, persist and report every deployed version's feature drift for one hour."""
    run = FeatureDriftRun(reports=[])
    memo: Memo = {}  # the models share views: each view's windows are read (and profiled) once per run
    for model in deployed:
        report = build_report(
            conn,
            model.spec,
            model.version,
            catalog,
            policy,
            model_importance(tracking, model, catalog),
            window_end=window.end,
            current=window.current,
            reference=window.reference,
            profile_cache=files.reference_profiles,
            memo=memo,
        )
        if not report.current_rows:
            run.notes.append(
                f"{model.name}: no feature rows in the window ending {window.end:%Y-%m-%d %H:%M} UTC (no data yet): "
                "nothing judged, nothing written; the last verdict stands"
            )
            run.reports.append(report)
            continue
        write_report(conn, report, window.partition_key)
        drift_status.record_verdict(
            files.status_file,
            model.name,
            drift_status.Signal.FEATURE_DRIFT,
            version=model.version,
            severity=report.severity,
            window_end=window.end,
            partition_key=window.partition_key,
        )
        if report.severity == Severity.INSUFFICIENT:
            run.notes.append(f"{model.name} v{model.version}: INSUFFICIENT, not judged: {report.rule}")
        elif report.severity != Severity.NORMAL:
            try:  # a rendering problem must not lose the drift report itself
                path = files.evidently_report(model.name, window.partition_key)
                run.evidently[model.name] = str(write_html_report(path, report.reference, report.current))
            except Exception as exc:
                run.notes.append(f"Evidently report for {model.name} not rendered: {exc!r}")
                run.evidently[model.name] = f"not rendered: {exc!r}"
        if report.severity == Severity.SEVERE:
            worst = ", ".join(report.worst()["feature"].head(3))
            alerter.raise_alert(
                Alert(
                    kind="severe_drift",
                    subject=model.name,
                    episode=window.episode,
                    summary=f"v{model.version}: feature drift SEVERE ({worst})",
                    details={"version": model.version, "window_end": window.end.isoformat()},
                )
            )
        run.reports.append(report)
    return run
