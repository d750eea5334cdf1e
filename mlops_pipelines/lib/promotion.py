"""What the promotion gate observes for a version: held-out training metrics, the holdout backtest, drift."""

from typing import Any

import duckdb
from mlflow import MlflowClient

from mlops_pipelines.lib import warehouse

BACKTEST_TABLE = "evaluation.backtest_results"
GATE_METRICS_TABLE = "evaluation.gate_metrics"
DRIFT_TABLE = "monitoring.model_drift_reports"


def observed_metrics(client: MlflowClient, conn: duckdb.DuckDBPyConnection, model: str, version: str) -> dict[str, Any]:
    mv = client.get_model_version(model, version)
    metrics: dict[str, Any] = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    if warehouse.table_exists(conn, GATE_METRICS_TABLE):
        rows = conn.execute(
            f"SELECT metric, value FROM {GATE_METRICS_TABLE} WHERE model = ? AND version = ?", [model, str(version)]
        ).fetchall()
        metrics.update({name: value for name, value in rows})
    metrics["drift_severity"] = drift_severity(conn, model)
    return metrics


def drift_severity(conn: duckdb.DuckDBPyConnection, model: str) -> str:
    """Worst severity of the model's latest drift report; NORMAL when drift has not been measured yet (the
    training window is then the reference itself)."""
    if not warehouse.table_exists(conn, DRIFT_TABLE):
        return "NORMAL"
    row = conn.execute(
        f"SELECT max(CASE severity WHEN 'SEVERE' THEN 2 WHEN 'MODERATE' THEN 1 ELSE 0 END) FROM {DRIFT_TABLE} "
        f"WHERE model = ? AND window_end = (SELECT max(window_end) FROM {DRIFT_TABLE} WHERE model = ?)",
        [model, model],
    ).fetchone()
    return ("NORMAL", "MODERATE", "SEVERE")[int(row[0])] if row and row[0] is not None else "NORMAL"
