"""Hourly realized performance (concept drift) of the deployed versions, and the table that keeps it:
``monitoring.model_performance`` (owned here: its name, columns, writes and reads).

Per version: its decisions whose labels are known by the end of the hour, scored again and compared with its
validation metrics (``concept_drift.build_performance_report``), the rows persisted, the verdict in the status
file. CRITICAL raises an alert and, when the policy's ``auto_demote`` is on and the version is in production,
asks ``demote`` (a governance action the caller supplies) to roll it back. An hour whose last day holds no
decisions yet (the schedule ticking past the data) judges and writes nothing: the last verdict stands."""

from dataclasses import dataclass, field
from typing import Protocol

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.alerts import Alert, Alerter
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import drift_status, prediction_log
from mlops_pipelines.lib.monitoring.concept_drift import PerformancePolicy, PerformanceReport, build_performance_report
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow, LoadBooster, MonitoringFiles
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus

TABLE = "monitoring.model_performance"
DDL = """
    metric VARCHAR, realized DOUBLE, baseline DOUBLE, compare VARCHAR, degradation DOUBLE, status VARCHAR,
    model VARCHAR, version VARCHAR, partition_key VARCHAR, window_start TIMESTAMP WITH TIME ZONE,
    window_end TIMESTAMP WITH TIME ZONE, n_labelled BIGINT, model_status VARCHAR
"""  # one row per metric, partition and model


def write_report(conn: duckdb.DuckDBPyConnection, report: PerformanceReport, partition_key: str) -> None:
    """The report's rows for this partition and model, replacing a previous run's."""
    warehouse.replace_rows(
        conn,
        TABLE,
        report.rows(partition_key),
        where="partition_key = ? AND model = ?",
        params=[partition_key, report.model],
        create_sql=DDL,
    )


def verdicts(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per model and partition: ``model, version, partition_key, window_end, status, n_labelled`` and
    ``metrics`` (``{metric: realized}``)."""
    columns = ["model", "version", "partition_key", "window_end", "status", "n_labelled", "metrics"]
    if not warehouse.table_exists(conn, TABLE):
        return pd.DataFrame(columns=columns)
    frame = conn.execute(
        f"SELECT model, any_value(version) AS version, partition_key, max(window_end) AS window_end, "
        f"any_value(model_status) AS status, any_value(n_labelled) AS n_labelled, "
        f"map_from_entries(list((metric, realized) ORDER BY metric) FILTER (WHERE metric IS NOT NULL)) AS metrics "
        f"FROM {TABLE} GROUP BY model, partition_key ORDER BY model, partition_key"
    ).fetchdf()
    metrics = [dict(m) if m is not None else {} for m in frame["metrics"]]
    return frame.assign(metrics=pd.Series(metrics, index=frame.index, dtype=object))[columns]


class Demote(Protocol):
    def __call__(self, model: DeployedVersion, *, reason: str) -> str:
        """Roll the production version back; the version serving again. ``MlopsError`` when impossible."""
        ...


@dataclass(frozen=True)
class PerformanceRun:
    reports: list[tuple[DeployedVersion, PerformanceReport]]
    demoted: dict[str, str] = field(default_factory=dict)  # model -> the version serving again
    notes: list[str] = field(default_factory=list)  # for the operator's log


def monitor_performance(
    conn: duckdb.DuckDBPyConnection,
    deployed: list[DeployedVersion],
    window: HourlyWindow,
    *,
    catalog: FeatureCatalog,
    policy: PerformancePolicy,
    tracking: Tracking,
    load_booster: LoadBooster,
    files: MonitoringFiles,
    alerter: Alerter,
    demote: Demote,
) -> PerformanceRun:
    """Judge, persist and report every deployed version's realized performance for one hour."""
    run = PerformanceRun(reports=[])
    client = tracking.client()
    for model in deployed:
        if not prediction_log.has_decisions(conn, model.spec, window.end - window.current, window.end):
            run.notes.append(
                f"{model.name}: no decisions in the window ending {window.end:%Y-%m-%d %H:%M} UTC (no data yet): "
                "nothing judged, nothing written; the last verdict stands"
            )
            continue
        baseline = client.get_run(model.run_id).data.metrics if model.run_id else {}
        report = build_performance_report(
            conn, model.spec, model.version, catalog, load_booster(model), baseline, policy, window_end=window.end
        )
        write_report(conn, report, window.partition_key)
        drift_status.record_verdict(
            files.status_file,
            model.name,
            drift_status.Signal.PERFORMANCE,
            version=model.version,
            severity=report.status,
            window_end=window.end,
            partition_key=window.partition_key,
        )
        run.reports.append((model, report))
        if report.status != PerformanceStatus.CRITICAL:
            continue
        if policy.auto_demote and model.alias == "production":
            reason = f"auto-demotion: critical performance drop of v{model.version} ({window.partition_key})"
            try:
                run.demoted[model.name] = demote(model, reason=reason)
                run.notes.append(f"{model.name}: v{model.version} rolled back, v{run.demoted[model.name]} serves again")
            except MlopsError as exc:
                run.notes.append(f"{model.name} v{model.version}: auto-demotion impossible: {exc}")
        failing = report.table[report.table["status"] == PerformanceStatus.CRITICAL]["metric"].tolist()
        demoted = run.demoted.get(model.name)
        alerter.raise_alert(
            Alert(
                kind="critical_performance",
                subject=model.name,
                episode=window.episode,
                summary=f"v{model.version}: realized {', '.join(failing)} past the critical threshold"
                + (f"; rolled back to v{demoted}" if demoted else ""),
                details={"version": model.version, "window_end": window.end.isoformat()},
            )
        )
    return run
