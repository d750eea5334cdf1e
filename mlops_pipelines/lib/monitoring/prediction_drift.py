"""Hourly prediction drift of the deployed versions, and the table that keeps it:
``monitoring.prediction_drift_reports`` (owned here: its name, columns, writes and reads).

Per version: its outputs on the current window's decisions against its outputs on the reference window's
(``drift_report.build_prediction_report``; outputs come from the prediction log), the rows persisted, the log
pruned to one reference window, the verdict in the status file (INSUFFICIENT never replaces one there). An hour
with no decisions yet changes nothing. Reported, not a retraining trigger: outputs move with the inputs, which
feature drift already judges."""

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.monitoring import drift_status, prediction_log
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy
from mlops_pipelines.lib.monitoring.drift_report import (
    PREDICTION,
    ROWS_DDL,
    DriftReport,
    build_prediction_report,
    store_rows,
)
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow, LoadBooster, MonitoringFiles

TABLE = "monitoring.prediction_drift_reports"
DDL = ROWS_DDL  # one row (feature ``prediction``) per partition and model


def write_report(conn: duckdb.DuckDBPyConnection, report: DriftReport, partition_key: str) -> None:
    """The report's rows for this partition and model, replacing a previous run's."""
    store_rows(conn, TABLE, report, partition_key)


def verdicts(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per model and partition: ``model, version, partition_key, window_end, severity, psi``."""
    if not warehouse.table_exists(conn, TABLE):
        return pd.DataFrame(columns=["model", "version", "partition_key", "window_end", "severity", "psi"])
    return conn.execute(
        f"SELECT model, any_value(version) AS version, partition_key, max(window_end) AS window_end, "
        f"any_value(model_severity) AS severity, any_value(psi) FILTER (WHERE feature = ?) AS psi "
        f"FROM {TABLE} GROUP BY model, partition_key ORDER BY model, partition_key",
        [PREDICTION],
    ).fetchdf()


def output_psi(report: DriftReport) -> float:
    """The PSI of the version's outputs: the headline number of a prediction-drift report."""
    psi = report.stats.loc[report.stats["feature"] == PREDICTION, "psi"]
    return float(psi.iloc[0])


def monitor_prediction_drift(
    conn: duckdb.DuckDBPyConnection,
    deployed: list[DeployedVersion],
    window: HourlyWindow,
    *,
    catalog: FeatureCatalog,
    policy: DriftPolicy,
    load_booster: LoadBooster,
    files: MonitoringFiles,
) -> list[DriftReport]:
    """Judge, persist and report every deployed version's prediction drift for one hour."""
    reports = []
    for model in deployed:
        report = build_prediction_report(
            conn,
            model.spec,
            model.version,
            catalog,
            policy,
            load_booster(model),
            window_end=window.end,
            current=window.current,
            reference=window.reference,
            max_reference_rows=window.max_reference_rows,
        )
        if not report.current_rows:
            continue  # an hour with no decisions yet (the schedule past the data): nothing judged, nothing pruned
        write_report(conn, report, window.partition_key)
        prediction_log.prune_predictions(conn, model.name, before=report.reference_start)
        drift_status.record_verdict(
            files.status_file,
            model.name,
            drift_status.Signal.PREDICTION_DRIFT,
            version=model.version,
            severity=report.severity,
            window_end=window.end,
            partition_key=window.partition_key,
        )
        reports.append(report)
    return reports
