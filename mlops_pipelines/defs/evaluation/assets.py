"""Backtest replay, SHAP explanations and the compliance report of the version each training run registered."""

import dagster as dg

from mlops_pipelines.catalog.policies import (
    load_drift_policy_file,
    load_promotion_policy,
    load_scenario_catalog,
    policy_status,
)
from mlops_pipelines.defs.common import CATALOG, PIPELINE_ACTOR, SPECS, trained_version
from mlops_pipelines.lib.core.plots import png_markdown
from mlops_pipelines.lib.evaluation import explanations, replay
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.lib.governance.backtests import replay_models
from mlops_pipelines.lib.governance.gate import evaluate_version
from mlops_pipelines.lib.governance.model_loading import load_for_inference
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


def build_backtest_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=f"{spec.name}_backtest",
        deps=[dg.AssetKey(spec.name)],
        owners=[spec.owner],
        kinds={"duckdb", "pandas"},
        metadata={"scenarios": policy_status("scenarios")},
        pool=WAREHOUSE_POOL,
        description=(
            f"Replay of the {spec.name} version this run trained over catalog/scenarios.yaml and its own held-out "
            "window, "
            "against buy-and-hold, a naive momentum rule (or a persistence volatility target) and the production "
            "champion; one-bar execution lag and transaction costs. Forecasts are scored too: IC, and RMSE / MAE / "
            "QLIKE for volatility. Table evaluation.backtest_results; logged to the version's MLflow run."
        ),
    )
    def _backtest(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        tracking, version, live = mlflow.tracking(), trained_version(context, spec.name), CATALOG.graph_hash()
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            models = replay_models(lifecycle, tracking, spec.name, version, live_graph_hash=live)
            if models.champion_skipped:
                context.log.warning(models.champion_skipped)
            results = replay.replay_version(
                lifecycle.conn, spec, CATALOG, load_scenario_catalog(), models.boosters, models.features
            )
            frame, gate_values = replay.store_results(lifecycle.conn, spec.name, version, results)
            run_id = lifecycle.run_id(spec.name, version)
        report = replay.log_backtest(tracking, run_id, spec, version, results, frame)
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                **{k: float(v) for k, v in gate_values.items()},
                **{f"holdout_{k}": float(v) for k, v in replay.holdout_forecast_metrics(results).items()},
                "headline": dg.MetadataValue.md(compliance.headline_markdown(gate_values)),
                "scenarios": len(results),
                "champion_version": models.champion or "none",
                "comparison": dg.MetadataValue.md(report.table_md),
                "equity_curves": dg.MetadataValue.md(
                    "\n\n".join(png_markdown(p, k) for k, p in report.equity_pngs.items())
                ),
                "dagster/row_count": len(frame),
                "dagster/table_name": replay.BACKTEST_TABLE,
            }
        )

    return _backtest


def build_explanations_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    check = f"{spec.name}_explanations_available"

    @dg.asset(
        key=f"{spec.name}_explanations",
        deps=[dg.AssetKey(spec.name)],
        owners=[spec.owner],
        kinds={"shap", "lightgbm"},
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                check,
                asset=f"{spec.name}_explanations",
                description="SHAP explanations were computed for the version this run trained.",
            )
        ],
        description=(
            f"SHAP values of the {spec.name} version this run trained on a deterministic sample of its test split: "
            "global importance (mean |SHAP|), a beeswarm summary and local explanations of the largest predictions, "
            "stored in the version's MLflow run. A failure is reported here and never fails training."
        ),
    )
    def _explanations(context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource):
        tracking, version = mlflow.tracking(), trained_version(context, spec.name)
        try:
            with open_lifecycle(warehouse, mlflow) as lifecycle:
                loaded = load_for_inference(
                    lifecycle, tracking, spec.name, version, live_graph_hash=CATALOG.graph_hash()
                )
                data = datasets.load_training_set(lifecycle.conn, spec)
                run_id = lifecycle.run_id(spec.name, version)
            report = explanations.explain_and_log(
                tracking, run_id, loaded.booster, data.split("test"), loaded.features, title=f"{spec.name} v{version}"
            )
        except Exception as exc:  # reported on the asset, never raised into training
            context.log.error(f"explanations failed for {spec.name} v{version}: {exc!r}")
            yield dg.MaterializeResult(metadata={"model_version": version, "error": repr(exc)})
            yield dg.AssetCheckResult(check_name=check, passed=False, metadata={"error": repr(exc)})
            return
        rows = len(report.explanation.sample)
        yield dg.MaterializeResult(
            metadata={
                "model_version": version,
                "rows_explained": rows,
                "global_importance": dg.MetadataValue.md(report.importance_md),
                "summary_plot": dg.MetadataValue.md(png_markdown(report.summary_png, "SHAP summary")),
                "largest_predictions": dg.MetadataValue.json(report.explanation.local()),
            }
        )
        yield dg.AssetCheckResult(check_name=check, passed=True, metadata={"rows": rows})

    return _explanations


def build_compliance_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=f"{spec.name}_compliance_report",
        deps=[dg.AssetKey(f"{spec.name}_backtest"), dg.AssetKey(f"{spec.name}_explanations")],
        owners=[spec.owner],
        kinds={"html"},
        pool=WAREHOUSE_POOL,
        description=(
            f"The compliance report of the {spec.name} version this run trained (HTML + markdown in its MLflow "
            "run): model card, lineage, scenario results vs baselines, SHAP summary, drift status, the "
            "promotion-policy evaluation with every threshold. Opens a PENDING_REVIEW sign-off "
            "(`mlops reviews approve`); the report's review status follows the decision."
        ),
    )
    def _report(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        tracking, version = mlflow.tracking(), trained_version(context, spec.name)
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            verdict = evaluate_version(
                lifecycle,
                spec.name,
                version,
                spec=spec,
                catalog=CATALOG,
                promotion_policy=load_promotion_policy(),
                drift_policy=load_drift_policy_file(),
            )
            run_id = lifecycle.run_id(spec.name, version)
            inputs = compliance.collect_inputs(tracking, spec.name, version, run_id, spec.feature_views, verdict)
            report_md, report_html = compliance.render_markdown(inputs), compliance.render_html(inputs)
            tracking.log_files(run_id, {"report.html": report_html, "report.md": report_md}, compliance.FOLDER)
            run = tracking.client().get_run(run_id).info
            uri = f"{run.artifact_uri}/{compliance.REPORT_HTML}"
            lifecycle.request_review(spec.name, version, report_uri=uri, actor=PIPELINE_ACTOR)
        tracking.client().set_model_version_tag(spec.name, version, "compliance_report", compliance.REPORT_HTML)
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "review_status": inputs.review_status,
                "policy_passed": verdict.passed,
                # the report in the MLflow UI (a browser will not open the file:// artifact URI from a web page)
                "report": dg.MetadataValue.url(mlflow.run_url(run.experiment_id, run_id, compliance.REPORT_HTML)),
                "report_artifact_uri": dg.MetadataValue.text(uri),
                "policy_evaluation": dg.MetadataValue.md(compliance.policy_markdown(verdict)),
                "report_markdown": dg.MetadataValue.md(report_md),
            }
        )

    return _report


evaluation_assets = [
    build(spec)
    for spec in SPECS.values()
    for build in (build_backtest_asset, build_explanations_asset, build_compliance_asset)
]
