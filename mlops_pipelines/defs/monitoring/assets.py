"""Hourly monitoring of every deployed model (production, else staging): feature drift, prediction drift and
realized performance (concept drift). Each writes its rows to the warehouse, its latest verdict to the status
file the retraining sensor reads, and its pictures and tables to the materialization's metadata."""

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import Field

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.catalog.policies import DRIFT_POLICY_PATH, policy_status
from mlops_pipelines.lib.core.alerts import Alert
from mlops_pipelines.lib.core.plots import png_markdown
from mlops_pipelines.lib.core.warehouse import replace_rows
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, LifecycleError
from mlops_pipelines.lib.governance.model_loading import load_for_inference
from mlops_pipelines.lib.monitoring.concept_drift import PERFORMANCE_TABLE, build_performance_report
from mlops_pipelines.lib.monitoring.drift_policy import load_drift_policy
from mlops_pipelines.lib.monitoring.drift_report import (
    PREDICTION,
    PREDICTION_REPORTS_TABLE,
    REPORTS_TABLE,
    DriftReport,
    Memo,
    build_prediction_report,
    build_report,
    histograms_png,
)
from mlops_pipelines.lib.monitoring.drift_status import update_status
from mlops_pipelines.lib.monitoring.evidently_report import render_drift_report
from mlops_pipelines.lib.monitoring.prediction_log import prune_predictions
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.partitions import MARKET_HOURS, WAREHOUSE_POOL
from mlops_pipelines.resources import (
    AlertsResource,
    DriftStatusResource,
    MlflowResource,
    WarehouseResource,
    open_lifecycle,
)

CATALOG = load_catalog()
SPECS = load_model_specs()
FEATURE_ASSETS = [dg.AssetKey(["features", name]) for name in CATALOG.views]
EVIDENTLY_SAMPLE = 5000  # rows per window Evidently renders (it is slow on large windows, RELIABILITY #12)
SEVERITY_CODE = {"NORMAL": 0, "MODERATE": 1, "SEVERE": 2, "INSUFFICIENT": -1, "OK": 0, "WARNING": 1, "CRITICAL": 2}

# Checked once when the code location loads; shown on each monitoring asset (RELIABILITY #20).
POLICY_METADATA = {"drift_policy": policy_status("drift")}


class MonitoringConfig(dg.Config):
    current_hours: int = Field(default=24, description="Length of the current window, ending at the partition end.")
    reference_days: int = Field(default=30, description="Length of the reference window before the current one.")
    max_reference_rows: int = Field(
        default=50_000, description="Reference decisions scored for prediction drift (a deterministic subset)."
    )
    policy_path: str = Field(default=str(DRIFT_POLICY_PATH), description="Drift and performance policy (YAML).")


@dataclass(frozen=True)
class Deployed:
    spec: ModelSpec
    version: str
    alias: str  # production or staging
    run_id: str


def deployed_versions(client: MlflowClient, log: dg.DagsterLogManager) -> list[Deployed]:
    """Every model's production version, else its staging one; models with neither are not monitored."""
    deployed = []
    for spec in SPECS.values():
        try:
            aliases = client.get_registered_model(spec.name).aliases
        except MlflowException:
            aliases = {}
        alias = next((a for a in ("production", "staging") if a in aliases), None)
        if alias is None:
            log.info(f"{spec.name}: no production or staging version, nothing to monitor")
            continue
        version = str(aliases[alias])
        deployed.append(Deployed(spec, version, alias, client.get_model_version(spec.name, version).run_id or ""))
    return deployed


def status_entry(context: dg.AssetExecutionContext, version: str, severity: str) -> dict[str, str]:
    return {
        "version": version,
        "severity": severity,
        "window_end": context.partition_time_window.end.isoformat(),
        "partition_key": context.partition_key,
    }


def evidently_html(context: dg.AssetExecutionContext, report: DriftReport, status_path: str) -> str:
    """A browsable Evidently report (capped sample) next to the drift status; our statistics stay the truth."""
    path = Path(status_path).parent / "evidently" / report.model / f"{context.partition_key}.html"
    try:
        html, _ = render_drift_report(report.reference.sample(EVIDENTLY_SAMPLE), report.current)
    except Exception as exc:  # a rendering problem must not lose the drift report itself
        context.log.warning(f"Evidently report for {report.model} not rendered: {exc!r}")
        return f"not rendered: {exc!r}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return str(path)


def drift_metadata(reports: list[DriftReport], columns: list[str]) -> dict[str, dg.MetadataValue]:
    """Per model: severity (text and a code the UI plots over partitions), worst rows, histograms."""
    metadata: dict[str, dg.MetadataValue] = {}
    tables, pictures = [], []
    for report in reports:
        worst = report.worst()
        metadata[f"{report.model}_severity"] = dg.MetadataValue.text(report.severity)
        metadata[f"{report.model}_severity_code"] = dg.MetadataValue.int(SEVERITY_CODE[report.severity])
        tables.append(
            f"**{report.model} v{report.version}: {report.severity}**\n\n"
            + worst[columns].to_markdown(index=False, floatfmt=".3f")
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
    drift_status: DriftStatusResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Per deployed model and feature: PSI, KS, mean shift, variance ratio, chi-squared, missing share of the last
    day against the 30 days before it, a severity per feature and per model (catalog/drift_policy.yaml).
    Rows persist to monitoring.model_drift_reports, one set per hourly partition (UTC). SEVERE raises an alert
    and, through the status file, the retraining sensor."""
    policy = load_drift_policy(config.policy_path)
    tracking = mlflow.tracking()
    window_end = context.partition_time_window.end
    reports, extra = [], {}
    memo: Memo = {}  # the models share views: each view's windows are read (and profiled) once per run
    with warehouse.connect() as conn:
        for model in deployed_versions(tracking.client(), context.log):
            manifest = json.loads(tracking.read_text_artifact(model.run_id, "manifest.json")) if model.run_id else {}
            importance = list(manifest.get("feature_importance", {})) or model.spec.features(CATALOG)
            report = build_report(
                conn,
                model.spec,
                model.version,
                CATALOG,
                policy,
                importance,
                window_end=window_end,
                current=timedelta(hours=config.current_hours),
                reference=timedelta(days=config.reference_days),
                profile_cache=Path(drift_status.path).parent / "reference_profiles",
                memo=memo,
            )
            replace_rows(
                conn,
                REPORTS_TABLE,
                report.rows(context.partition_key),
                where="partition_key = ? AND model = ?",
                params=[context.partition_key, model.spec.name],
            )
            update_status(
                drift_status.path,
                model.spec.name,
                "feature_drift",
                status_entry(context, model.version, report.severity),
            )
            if report.severity != "NORMAL":
                extra[f"{model.spec.name}_evidently_report"] = dg.MetadataValue.path(
                    evidently_html(context, report, drift_status.path)
                )
            if report.severity == "SEVERE":
                worst = ", ".join(report.worst()["feature"].head(3))
                alerts.alerter().raise_alert(
                    Alert(
                        kind="severe_drift",
                        subject=model.spec.name,
                        episode=window_end.date().isoformat(),
                        summary=f"v{model.version}: feature drift SEVERE ({worst})",
                        details={"version": model.version, "window_end": window_end.isoformat()},
                    )
                )
            reports.append(report)
    columns = ["feature", "severity", "psi", "ks_statistic", "mean_shift_sd", "variance_ratio", "status"]
    return dg.MaterializeResult(
        metadata={**drift_metadata(reports, columns), **extra, "window_end": dg.MetadataValue.text(str(window_end))}
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
    drift_status: DriftStatusResource,
) -> dg.MaterializeResult:
    """The distribution of each deployed version's outputs on the last day's decisions against its outputs on
    the 30 days before (point-in-time features, the registered artifact, sha256-checked). Same statistics and
    thresholds as a feature; rows persist to monitoring.prediction_drift_reports, outputs to the prediction log
    monitoring.predictions (each decision scored once, kept for one reference window). Reported, not a
    retraining trigger: outputs move with the inputs, which feature drift already judges."""
    policy = load_drift_policy(config.policy_path)
    tracking = mlflow.tracking()
    reports = []
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        conn = lifecycle.conn
        for model in deployed_versions(tracking.client(), context.log):
            loaded = load_for_inference(
                lifecycle, tracking, model.spec.name, model.version, live_graph_hash=CATALOG.graph_hash()
            )
            report = build_prediction_report(
                conn,
                model.spec,
                model.version,
                CATALOG,
                policy,
                loaded.booster,
                window_end=context.partition_time_window.end,
                current=timedelta(hours=config.current_hours),
                reference=timedelta(days=config.reference_days),
                max_reference_rows=config.max_reference_rows,
            )
            replace_rows(
                conn,
                PREDICTION_REPORTS_TABLE,
                report.rows(context.partition_key),
                where="partition_key = ? AND model = ?",
                params=[context.partition_key, model.spec.name],
            )
            prune_predictions(conn, model.spec.name, before=report.reference_start)
            update_status(
                drift_status.path,
                model.spec.name,
                "prediction_drift",
                status_entry(context, model.version, report.severity),
            )
            reports.append(report)
    columns = ["feature", "severity", "psi", "ks_statistic", "mean_shift_sd", "variance_ratio", "n_current"]
    metadata = drift_metadata(reports, columns)
    for report in reports:
        stats = report.stats.set_index("feature").loc[PREDICTION]
        metadata[f"{report.model}_prediction_psi"] = dg.MetadataValue.float(float(stats["psi"]))
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
    drift_status: DriftStatusResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Concept drift: each deployed version's decisions of the last 72 hours whose labels are known by the end
    of the hour, scored again, their hit rate and AUC (classifiers) or RMSE and information coefficient
    (regressors) against the version's validation metrics, with warning and critical thresholds
    (catalog/drift_policy.yaml, `performance`). Rows persist to monitoring.model_performance. CRITICAL raises an
    alert, triggers retraining through the sensor and, when `auto_demote` is on, rolls PRODUCTION back."""
    policy = load_drift_policy(config.policy_path).performance
    tracking = mlflow.tracking()
    client = tracking.client()
    window_end = context.partition_time_window.end
    metadata: dict[str, dg.MetadataValue] = {}
    tables = []
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        conn = lifecycle.conn
        for model in deployed_versions(client, context.log):
            name = model.spec.name
            loaded = load_for_inference(lifecycle, tracking, name, model.version, live_graph_hash=CATALOG.graph_hash())
            baseline = client.get_run(model.run_id).data.metrics if model.run_id else {}
            report = build_performance_report(
                conn, model.spec, model.version, CATALOG, loaded.booster, baseline, policy, window_end=window_end
            )
            replace_rows(
                conn,
                PERFORMANCE_TABLE,
                report.rows(context.partition_key),
                where="partition_key = ? AND model = ?",
                params=[context.partition_key, name],
            )
            update_status(drift_status.path, name, "performance", status_entry(context, model.version, report.status))
            metadata[f"{name}_status"] = dg.MetadataValue.text(report.status)
            metadata[f"{name}_status_code"] = dg.MetadataValue.int(SEVERITY_CODE[report.status])
            for metric, realized in zip(report.table["metric"], report.table["realized"], strict=True):
                metadata[f"{name}_{metric}"] = dg.MetadataValue.float(float(realized))
            tables.append(
                f"**{name} v{model.version} ({model.alias}): {report.status}**, {report.n_labelled} labelled "
                f"decisions since {report.window_start:%Y-%m-%d %H:%M} UTC\n\n"
                + (report.table.to_markdown(index=False, floatfmt=".4f") if len(report.table) else "no metric")
            )
            if report.status == "CRITICAL":
                demoted = None
                if policy.auto_demote and model.alias == "production":
                    demoted = auto_demote(context, lifecycle, name, model.version)
                failing = report.table[report.table["status"] == "CRITICAL"]["metric"].tolist()
                alerts.alerter().raise_alert(
                    Alert(
                        kind="critical_performance",
                        subject=name,
                        episode=window_end.date().isoformat(),
                        summary=f"v{model.version}: realized {', '.join(failing)} past the critical threshold"
                        + (f"; rolled back to v{demoted}" if demoted else ""),
                        details={"version": model.version, "window_end": window_end.isoformat()},
                    )
                )
    metadata["performance"] = dg.MetadataValue.md("\n\n".join(tables) or "no deployed model")
    return dg.MaterializeResult(metadata=metadata)


def auto_demote(context: dg.AssetExecutionContext, lifecycle: Lifecycle, model: str, version: str) -> str | None:
    """PRODUCTION back to the version it superseded, through the lifecycle (audited); None when impossible."""
    try:
        target = lifecycle.rollback(
            model,
            actor="monitoring/model_performance",
            reason=f"auto-demotion: critical performance drop of v{version} ({context.partition_key})",
        )
    except LifecycleError as exc:
        context.log.error(f"{model} v{version}: auto-demotion impossible: {exc}")
        return None
    context.log.warning(f"{model}: v{version} rolled back, v{target} serves again")
    return target
