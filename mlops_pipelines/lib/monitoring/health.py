"""Model health at a glance: each monitored model's latest verdict per signal, and the timeline of verdicts.

Read from the three monitoring tables through their owners (``feature_drift``, ``prediction_drift``,
``model_performance``); the latest verdict of a signal is that of its latest window, so a backfilled old hour
never hides today's."""

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from mlops_pipelines.lib.monitoring import feature_drift, model_performance, prediction_drift
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity

TIMELINE_COLUMNS = ["model", "version", "partition_key", "feature_drift", "prediction_drift", "performance"]


@dataclass(frozen=True)
class ModelHealth:
    """One model's latest verdicts (None: that signal never ran for it)."""

    model: str
    version: str  # of the latest feature-drift report (else of the latest other one)
    window_end: datetime  # the latest window any signal judged
    feature_drift: Severity | None
    prediction_drift: Severity | None
    performance: PerformanceStatus | None
    prediction_psi: float | None
    metrics: dict[str, float]  # realized metrics of the latest performance report
    n_labelled: int | None


def _latest(frame: pd.DataFrame) -> dict[str, dict]:
    """model -> its row with the latest window."""
    if frame.empty:
        return {}
    rows = frame.sort_values(["window_end", "partition_key"]).groupby("model").tail(1)
    return {str(row["model"]): row for row in rows.to_dict("records")}


def latest_health(conn: duckdb.DuckDBPyConnection) -> list[ModelHealth]:
    """Every monitored model's latest verdicts, by model name."""
    features = _latest(feature_drift.verdicts(conn))
    predictions = _latest(prediction_drift.verdicts(conn))
    performance = _latest(model_performance.verdicts(conn))
    out = []
    for model in sorted(set(features) | set(predictions) | set(performance)):
        rows = [r for r in (features.get(model), predictions.get(model), performance.get(model)) if r is not None]
        feat, pred, perf = features.get(model), predictions.get(model), performance.get(model)
        out.append(
            ModelHealth(
                model=model,
                version=str(rows[0]["version"]),
                window_end=max(pd.Timestamp(r["window_end"]).to_pydatetime() for r in rows),
                feature_drift=Severity(feat["severity"]) if feat else None,
                prediction_drift=Severity(pred["severity"]) if pred else None,
                performance=PerformanceStatus(perf["status"]) if perf else None,
                prediction_psi=_number(pred["psi"]) if pred else None,
                metrics={k: float(v) for k, v in perf["metrics"].items()} if perf else {},
                n_labelled=int(perf["n_labelled"]) if perf else None,
            )
        )
    return out


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def monitoring_timeline(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per model and monitored partition with a feature-drift report, ordered by model and partition:
    ``model, version, partition_key, feature_drift, prediction_drift, performance`` (verdicts as text, None
    where that signal did not run)."""
    features = feature_drift.verdicts(conn)
    if features.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    keys = ["model", "partition_key"]
    timeline = (
        features.rename(columns={"severity": "feature_drift"})
        .merge(
            prediction_drift.verdicts(conn)[[*keys, "severity"]].rename(columns={"severity": "prediction_drift"}),
            on=keys,
            how="left",
        )
        .merge(
            model_performance.verdicts(conn)[[*keys, "status"]].rename(columns={"status": "performance"}),
            on=keys,
            how="left",
        )
    )
    timeline = timeline[TIMELINE_COLUMNS].sort_values(["model", "partition_key"], ignore_index=True)
    return timeline.astype(object).where(timeline.notna(), None)
