"""Hourly feature drift of every deployed model (production, else staging) against its reference window."""

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
from mlflow.exceptions import MlflowException
from pydantic import Field

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.alerts import Alert
from mlops_pipelines.lib.drift_report import REPORTS_TABLE, DriftReport, build_report, histograms_png
from mlops_pipelines.lib.drift_status import update_status
from mlops_pipelines.lib.evidently_report import render_drift_report
from mlops_pipelines.lib.files import png_markdown
from mlops_pipelines.lib.warehouse import replace_rows
from mlops_pipelines.partitions import MARKET_HOURS, WAREHOUSE_POOL
from mlops_pipelines.resources import AlertsResource, DriftStatusResource, MlflowResource, WarehouseResource

CATALOG = load_catalog()
SPECS = load_model_specs()
SEVERITY_CODE = {"NORMAL": 0, "MODERATE": 1, "SEVERE": 2}


def evidently_html(context: dg.AssetExecutionContext, report: DriftReport, status_path: str) -> str:
    """A browsable Evidently report (capped sample) next to the drift status; our statistics stay the truth."""
    path = Path(status_path).parent / "evidently" / report.model / f"{context.partition_key}.html"
    try:
        html, _ = render_drift_report(report.reference, report.current)
    except Exception as exc:  # a rendering problem must not lose the drift report itself
        context.log.warning(f"Evidently report for {report.model} not rendered: {exc!r}")
        return f"not rendered: {exc!r}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return str(path)


class DriftConfig(dg.Config):
    current_hours: int = Field(default=24, description="Length of the current window, ending at the partition end.")
    reference_days: int = Field(default=30, description="Length of the reference window before the current one.")


@dg.asset(
    key=["monitoring", "feature_drift"],
    deps=[dg.AssetKey(["features", name]) for name in CATALOG.views],
    partitions_def=MARKET_HOURS,
    kinds={"duckdb", "matplotlib"},
    pool=WAREHOUSE_POOL,
)
def feature_drift(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    drift_status: DriftStatusResource,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    """Per deployed model and feature: PSI, KS, mean shift, variance ratio, chi-squared, missing share of the last
    day against the 30 days before it, a severity per feature and per model (catalog/drift_policy.yaml).
    Rows persist to monitoring.model_drift_reports, one set per hourly partition (UTC)."""
    policy = load_drift_policy_file()
    tracking = mlflow.tracking()
    client = tracking.client()
    window_end = context.partition_time_window.end
    metadata: dict[str, str | int] = {}
    pictures, tables = [], []
    with warehouse.connect() as conn:
        for spec in SPECS.values():
            try:
                aliases = client.get_registered_model(spec.name).aliases
            except MlflowException:
                aliases = {}
            version = aliases.get("production") or aliases.get("staging")
            if version is None:
                context.log.info(f"{spec.name}: no production or staging version, nothing to monitor")
                continue
            run_id = client.get_model_version(spec.name, str(version)).run_id
            manifest = json.loads(tracking.read_text_artifact(run_id, "manifest.json")) if run_id else {}
            importance = list(manifest.get("feature_importance", {})) or spec.features(CATALOG)
            report = build_report(
                conn,
                spec,
                str(version),
                CATALOG,
                policy,
                importance,
                window_end=window_end,
                current=timedelta(hours=config.current_hours),
                reference=timedelta(days=config.reference_days),
            )
            replace_rows(
                conn,
                REPORTS_TABLE,
                report.rows(context.partition_key),
                where="partition_key = ? AND model = ?",
                params=[context.partition_key, spec.name],
            )
            update_status(
                drift_status.path,
                spec.name,
                {
                    "version": str(version),
                    "severity": report.severity,
                    "window_end": window_end.isoformat(),
                    "partition_key": context.partition_key,
                },
            )
            worst = report.worst()
            if report.severity != "NORMAL":
                metadata[f"{spec.name}_evidently_report"] = evidently_html(context, report, drift_status.path)
            if report.severity == "SEVERE":
                alerts.alerter().raise_alert(
                    Alert(
                        kind="severe_drift",
                        subject=spec.name,
                        episode=window_end.date().isoformat(),
                        summary=f"v{version}: feature drift SEVERE ({', '.join(worst['feature'].head(3))})",
                        details={"version": str(version), "window_end": window_end.isoformat()},
                    )
                )
            metadata[f"{spec.name}_severity"] = report.severity
            metadata[f"{spec.name}_severity_code"] = SEVERITY_CODE[report.severity]
            tables.append(
                f"**{spec.name} v{version}: {report.severity}**\n\n"
                + worst[
                    ["feature", "severity", "psi", "ks_statistic", "mean_shift_sd", "variance_ratio", "status"]
                ].to_markdown(index=False, floatfmt=".3f")
            )
            pictures.append(png_markdown(histograms_png(report, worst["feature"].head(4).tolist()), spec.name))
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "window_end": str(window_end),
            "most_drifted": dg.MetadataValue.md("\n\n".join(tables) or "no deployed model"),
            "histograms": dg.MetadataValue.md("\n\n".join(pictures) or "no deployed model"),
        }
    )
