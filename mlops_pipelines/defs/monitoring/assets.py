"""Hourly monitoring of every deployed model (production, else staging): feature drift, prediction drift and
realized performance (concept drift), then the operator's glance at model health. The logic is in
lib/monitoring (one module per signal, owning its table); here: resources in, one library call, metadata out."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg
from pydantic import Field

from mlops_pipelines.catalog.policies import policy_status
from mlops_pipelines.defs.common import CATALOG, SPECS
from mlops_pipelines.lib.core.plots import png_markdown
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.monitored_versions import auto_demotion, booster_loader, deployed_versions
from mlops_pipelines.lib.monitoring.drift_plots import histograms_png
from mlops_pipelines.lib.monitoring.drift_report import DriftReport
from mlops_pipelines.lib.monitoring.feature_drift import monitor_feature_drift
from mlops_pipelines.lib.monitoring.health import ModelHealth, latest_health
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow
from mlops_pipelines.lib.monitoring.model_performance import monitor_performance
from mlops_pipelines.lib.monitoring.prediction_drift import monitor_prediction_drift, output_psi
from mlops_pipelines.partitions import MARKET_HOURS, WAREHOUSE_POOL
from mlops_pipelines.resources import (
    AlertsResource,
    MlflowResource,
    MonitoringResource,
    WarehouseResource,
    open_lifecycle,
)

FEATURE_ASSETS = [dg.AssetKey(["features", name]) for name in CATALOG.views]
FEATURE_COLUMNS = ["feature", "severity", "psi", "mean_shift_sd", "variance_ratio", "n_effective", "reason"]
PREDICTION_COLUMNS = ["feature", "severity", "psi", "ks_statistic", "mean_shift_sd", "variance_ratio", "n_current"]

# Checked once when the code location loads; shown on each monitoring asset.
POLICY_METADATA = {"drift_policy": policy_status("drift")}


class MonitoringConfig(dg.Config):
    current_hours: int = Field(default=24, description="Length of the current window, ending at the partition end.")
    reference_days: int = Field(default=30, description="Length of the reference window before the current one.")
    max_reference_rows: int = Field(
        default=50_000, description="Reference decisions scored for prediction drift (a deterministic subset)."
    )

    def window(self, context: dg.AssetExecutionContext) -> HourlyWindow:
        return HourlyWindow(
            partition_key=context.partition_key,
            end=context.partition_time_window.end,
            current=timedelta(hours=self.current_hours),
            reference=timedelta(days=self.reference_days),
            max_reference_rows=self.max_reference_rows,
        )


@contextmanager
def deployed(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> Iterator[tuple[Lifecycle, list[DeployedVersion]]]:
    """The lifecycle (holding the warehouse) and what it says is deployed; the models it does not, logged."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        models = deployed_versions(lifecycle, SPECS.values())
        for name in sorted(set(SPECS) - {m.name for m in models}):
            context.log.info(f"{name}: no production or staging version, nothing to monitor")
        yield lifecycle, models


def drift_metadata(reports: list[DriftReport], columns: list[str]) -> dict[str, dg.MetadataValue]:
    """Per model: severity (text and a code the UI plots over partitions), worst rows, histograms."""
    metadata: dict[str, dg.MetadataValue] = {}
    tables, pictures = [], []
    for report in reports:
        metadata[f"{report.model}_severity"] = dg.MetadataValue.text(str(report.severity))
        metadata[f"{report.model}_severity_code"] = dg.MetadataValue.int(report.severity.code)
        if not report.current_rows:
            tables.append(f"**{report.model} v{report.version}: no rows in the window yet: nothing judged or changed**")
            continue
        worst = report.worst()
        tables.append(
            f"**{report.model} v{report.version}: {report.severity}**"
            + (f" - {report.rule}" if report.rule else "")
            + "\n\n"
            + worst[[c for c in columns if c in worst]].to_markdown(index=False, floatfmt=".3f")
        )
        pictures.append(png_markdown(histograms_png(report, worst["feature"].head(4).tolist()), report.model))
    metadata["most_drifted"] = dg.MetadataValue.md("\n\n".join(tables) or "no deployed model")
    metadata["histograms"] = dg.MetadataValue.md("\n\n".join(pictures) or "no deployed model")
    return metadata


@dg.asset(
    key=["monitoring", "feature_drift"],
    deps=FEATURE_ASSETS,
    partitions_def=MARKET_HOURS,
    kinds={"duckdb", "matplotlib"},
    pool=WAREHOUSE_POOL,
    metadata=POLICY_METADATA,
)
def feature_drift(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    monitoring: MonitoringResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Per deployed model and feature: PSI, KS, mean shift, variance ratio, chi-squared, missing share of the last
    day against the 30 days before it, a severity per feature and per model (catalog/drift_policy.yaml).
    Rows persist to monitoring.model_drift_reports, one set per hourly partition (UTC). SEVERE raises an alert
    and, through the status file, the retraining sensor."""
    window = config.window(context)
    with deployed(context, warehouse, mlflow) as (lifecycle, models):
        run = monitor_feature_drift(
            lifecycle.conn,
            models,
            window,
            catalog=CATALOG,
            policy=monitoring.policy(),
            tracking=mlflow.tracking(),
            files=monitoring.files(),
            alerter=alerts.alerter(),
        )
    for note in run.notes:
        context.log.warning(note)
    evidently = {f"{model}_evidently_report": dg.MetadataValue.path(path) for model, path in run.evidently.items()}
    return dg.MaterializeResult(
        metadata={
            **drift_metadata(run.reports, FEATURE_COLUMNS),
            **evidently,
            "window_end": dg.MetadataValue.text(str(window.end)),
        }
    )


@dg.asset(
    key=["monitoring", "prediction_drift"],
    deps=FEATURE_ASSETS,
    partitions_def=MARKET_HOURS,
    kinds={"duckdb", "lightgbm", "matplotlib"},
    pool=WAREHOUSE_POOL,
    metadata=POLICY_METADATA,
)
def prediction_drift(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    monitoring: MonitoringResource,
) -> dg.MaterializeResult:
    """The distribution of each deployed version's outputs on the last day's decisions against its outputs on
    the 30 days before (point-in-time features, the registered artifact, sha256-checked). Same statistics and
    thresholds as a feature; rows persist to monitoring.prediction_drift_reports, outputs to the prediction log
    monitoring.predictions (each decision scored once, kept for one reference window). Reported, not a
    retraining trigger: outputs move with the inputs, which feature drift already judges."""
    with deployed(context, warehouse, mlflow) as (lifecycle, models):
        reports = monitor_prediction_drift(
            lifecycle.conn,
            models,
            config.window(context),
            catalog=CATALOG,
            policy=monitoring.policy(),
            load_booster=booster_loader(lifecycle, mlflow.tracking(), CATALOG.graph_hash()),
            files=monitoring.files(),
        )
    metadata = drift_metadata(reports, PREDICTION_COLUMNS)
    for report in reports:
        metadata[f"{report.model}_prediction_psi"] = dg.MetadataValue.float(output_psi(report))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=["monitoring", "model_performance"],
    deps=[dg.AssetKey(["raw", "market_bars"]), *FEATURE_ASSETS],
    partitions_def=MARKET_HOURS,
    kinds={"duckdb", "lightgbm"},
    pool=WAREHOUSE_POOL,
    metadata=POLICY_METADATA,
)
def model_performance(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    monitoring: MonitoringResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Concept drift: each deployed version's decisions of the last 72 hours whose labels are known by the end
    of the hour, scored again, their hit rate and AUC (classifiers) or RMSE and information coefficient
    (regressors) against the version's validation metrics, with warning and critical thresholds
    (catalog/drift_policy.yaml, `performance`). Rows persist to monitoring.model_performance. CRITICAL raises an
    alert, triggers retraining through the sensor and, when `auto_demote` is on, rolls PRODUCTION back."""
    with deployed(context, warehouse, mlflow) as (lifecycle, models):
        run = monitor_performance(
            lifecycle.conn,
            models,
            config.window(context),
            catalog=CATALOG,
            policy=monitoring.policy().performance,
            tracking=mlflow.tracking(),
            load_booster=booster_loader(lifecycle, mlflow.tracking(), CATALOG.graph_hash()),
            files=monitoring.files(),
            alerter=alerts.alerter(),
            demote=auto_demotion(lifecycle),
        )
    for note in run.notes:
        context.log.warning(note)
    metadata: dict[str, dg.MetadataValue] = {}
    tables = []
    for model, report in run.reports:
        metadata[f"{model.name}_status"] = dg.MetadataValue.text(str(report.status))
        metadata[f"{model.name}_status_code"] = dg.MetadataValue.int(report.status.code)
        for metric, realized in zip(report.table["metric"], report.table["realized"], strict=True):
            metadata[f"{model.name}_{metric}"] = dg.MetadataValue.float(float(realized))
        tables.append(
            f"**{model.name} v{model.version} ({model.alias}): {report.status}**, {report.n_labelled} labelled "
            f"decisions since {report.window_start:%Y-%m-%d %H:%M} UTC ({report.note})\n\n"
            + (report.table.to_markdown(index=False, floatfmt=".4f") if len(report.table) else "no metric")
        )
    metadata["performance"] = dg.MetadataValue.md("\n\n".join(tables + run.notes) or "no deployed model")
    return dg.MaterializeResult(metadata=metadata)


def health_metadata(health: list[ModelHealth]) -> dict[str, dg.MetadataValue]:
    """Per model, numbers the UI plots over this asset's materializations (codes: 0 NORMAL/OK, 1 MODERATE/WARNING,
    2 SEVERE/CRITICAL, -1 INSUFFICIENT), and one table of the latest verdicts."""
    metadata: dict[str, dg.MetadataValue] = {}
    lines = [
        "| model | version | window end (UTC) | feature drift | prediction drift | performance | realized |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in health:
        signals = {
            "feature_drift": h.feature_drift,
            "prediction_drift": h.prediction_drift,
            "performance": h.performance,
        }
        for signal, verdict in signals.items():
            if verdict is not None:
                metadata[f"{h.model}_{signal}_code"] = dg.MetadataValue.int(verdict.code)
        for metric, realized in h.metrics.items():
            metadata[f"{h.model}_{metric}"] = dg.MetadataValue.float(realized)
        if h.prediction_psi is not None:
            metadata[f"{h.model}_prediction_psi"] = dg.MetadataValue.float(h.prediction_psi)
        realized = ", ".join(f"{m} {v:.3f}" for m, v in h.metrics.items()) or "-"
        cells = [h.model, f"v{h.version}", f"{h.window_end:%Y-%m-%d %H:%M}", *(str(v or "-") for v in signals.values())]
        lines.append("| " + " | ".join([*cells, realized]) + " |")
    metadata["latest"] = dg.MetadataValue.md("\n".join(lines) if health else "no model monitored yet")
    metadata["models_monitored"] = dg.MetadataValue.int(len(health))
    return metadata


@dg.asset(
    key=["monitoring", "model_health"],
    deps=[feature_drift, prediction_drift, model_performance],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
)
def model_health(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The operator's glance: each monitored model's latest verdict per signal (feature drift, prediction drift,
    performance) and realized metrics, from the three monitoring tables. Unpartitioned and materialized by every
    drift_job run, so its numbers plot over time in the UI (the hourly assets have thousands of partitions)."""
    with warehouse.connect(read_only=True) as conn:
        health = latest_health(conn)
    return dg.MaterializeResult(metadata=health_metadata(health))
