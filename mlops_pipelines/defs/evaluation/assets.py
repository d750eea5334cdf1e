"""Backtest replay, SHAP explanations and the compliance report of each model's newest version."""

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.catalog.policies import (
    load_drift_policy_file,
    load_promotion_policy,
    load_scenario_catalog,
    policy_status,
)
from mlops_pipelines.lib import compliance, datasets, evaluation, explanations, policy, promotion
from mlops_pipelines.lib.files import png_markdown
from mlops_pipelines.lib.model_loading import load_for_inference
from mlops_pipelines.lib.model_specs import ModelSpec
from mlops_pipelines.lib.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.tracking import Tracking
from mlops_pipelines.lib.warehouse import replace_rows
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle

CATALOG = load_catalog()
SPECS = load_model_specs()
PIPELINE_ACTOR = "pipeline:dagster"
SHAP_SAMPLE = 2000


def newest_version(tracking: Tracking, model: str) -> Any:
    versions = tracking.client().search_model_versions(f"name = '{model}'")
    if not versions:
        raise LookupError(f"{model} has no registered version; materialize {model} first")
    return max(versions, key=lambda v: int(v.version))


def log_files(tracking: Tracking, run_id: str, files: dict[str, bytes | str], artifact_dir: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        tracking.client().log_artifacts(run_id, tmp, artifact_dir)


def build_backtest_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=f"{spec.name}_backtest",
        deps=[dg.AssetKey(spec.name)],
        owners=[spec.owner],
        kinds={"duckdb", "pandas"},
        metadata={"scenarios": policy_status("scenarios")},
        pool=WAREHOUSE_POOL,
        description=(
            f"Replay of the newest {spec.name} version over catalog/scenarios.yaml and its own held-out window, "
            "against buy-and-hold, a naive momentum rule (or a persistence volatility target) and the production "
            "champion; one-bar execution lag and transaction costs. Table evaluation.backtest_results; logged "
            "to the version's MLflow run."
        ),
    )
    def _backtest(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        tracking = mlflow.tracking()
        mv = newest_version(tracking, spec.name)
        version = str(mv.version)
        live = CATALOG.graph_hash()
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            conn = lifecycle.conn
            models = {
                evaluation.CANDIDATE: load_for_inference(lifecycle, tracking, spec.name, version, live_graph_hash=live)
            }
            champion = lifecycle.record(spec.name).aliases.get("production")
            if champion is not None and champion != version:
                try:
                    models[evaluation.CHAMPION] = load_for_inference(
                        lifecycle, tracking, spec.name, champion, live_graph_hash=live
                    )
                except Exception as exc:  # a champion on another feature graph cannot be replayed on this one
                    context.log.warning(f"champion v{champion} not replayed: {exc}")
            features = models[evaluation.CANDIDATE].features
            data = datasets.load_training_set(conn, spec)
            test, train = data.split("test"), data.split("train")
            delay = pd.Timedelta(hours=1) + pd.Timedelta(minutes=spec.decision_delay_minutes)
            holdout = (
                (test[ENTITY_TIME].min() - delay).to_pydatetime(),
                (test[ENTITY_TIME].max() - delay + timedelta(hours=1)).to_pydatetime(),
            )
            results = evaluation.replay_all(
                conn,
                spec,
                CATALOG,
                load_scenario_catalog(),
                {k: m.booster for k, m in models.items()},
                features,
                holdout=holdout,
                train_end=(train[ENTITY_TIME].max() - delay).to_pydatetime(),
            )
            frame = evaluation.results_frame(results, spec.name, version)
            gate = evaluation.gate_metrics(results)
            gate_rows = pd.DataFrame(
                {"model": spec.name, "version": version, "metric": list(gate), "value": list(gate.values())}
            )
            replace_rows(
                conn, promotion.BACKTEST_TABLE, frame, where="model = ? AND version = ?", params=[spec.name, version]
            )
            replace_rows(
                conn,
                promotion.GATE_METRICS_TABLE,
                gate_rows,
                where="model = ? AND version = ?",
                params=[spec.name, version],
            )
        pngs = {r.scenario: evaluation.equity_png(r, f"{spec.name} v{version}") for r in results}
        table = evaluation.comparison_markdown(results)
        client = tracking.client()
        for row in frame.itertuples():
            for metric in ("sharpe", "max_drawdown", "annual_return"):
                client.log_metric(mv.run_id, f"bt.{row.scenario}.{row.strategy}.{metric}", float(getattr(row, metric)))
        log_files(
            tracking,
            mv.run_id,
            {f"equity_{k}.png": v for k, v in pngs.items()}
            | {"results.csv": frame.to_csv(index=False), "comparison.md": table},
            "backtest",
        )
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                **{k: float(v) for k, v in gate.items()},
                "scenarios": len(results),
                "champion_version": str(champion) if evaluation.CHAMPION in models else "none",
                "comparison": dg.MetadataValue.md(table),
                "equity_curves": dg.MetadataValue.md("\n\n".join(png_markdown(p, k) for k, p in pngs.items())),
                "dagster/row_count": len(frame),
                "dagster/table_name": promotion.BACKTEST_TABLE,
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
                description="SHAP explanations were computed for the newest version.",
            )
        ],
        description=(
            f"SHAP values of the newest {spec.name} version on a deterministic sample of its test split: global "
            "importance (mean |SHAP|), a beeswarm summary and local explanations of the largest predictions, "
            "stored in the version's MLflow run. A failure is reported here and never fails training."
        ),
    )
    def _explanations(context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource):
        tracking = mlflow.tracking()
        mv = newest_version(tracking, spec.name)
        try:
            with open_lifecycle(warehouse, mlflow) as lifecycle:
                loaded = load_for_inference(
                    lifecycle, tracking, spec.name, str(mv.version), live_graph_hash=CATALOG.graph_hash()
                )
                data = datasets.load_training_set(lifecycle.conn, spec)
            sample = explanations.deterministic_sample(data.split("test"), SHAP_SAMPLE)
            result = explanations.explain(loaded.booster, sample, loaded.features)
            png = explanations.summary_plot_png(result, f"{spec.name} v{mv.version}: SHAP summary")
            importance = explanations.importance_markdown(result)
            log_files(
                tracking,
                mv.run_id,
                {
                    "shap_summary.png": png,
                    "global_importance.csv": result.global_importance.rename("mean_abs_shap").to_csv(),
                    "local_explanations.json": json.dumps(result.local(), indent=2),
                    "importance.md": importance,
                },
                "explanations",
            )
        except Exception as exc:  # reported on the asset, never raised into training
            context.log.error(f"explanations failed for {spec.name} v{mv.version}: {exc!r}")
            yield dg.MaterializeResult(metadata={"model_version": str(mv.version), "error": repr(exc)})
            yield dg.AssetCheckResult(check_name=check, passed=False, metadata={"error": repr(exc)})
            return
        yield dg.MaterializeResult(
            metadata={
                "model_version": str(mv.version),
                "rows_explained": len(sample),
                "global_importance": dg.MetadataValue.md(importance),
                "summary_plot": dg.MetadataValue.md(png_markdown(png, "SHAP summary")),
                "largest_predictions": dg.MetadataValue.json(result.local()),
            }
        )
        yield dg.AssetCheckResult(check_name=check, passed=True, metadata={"rows": len(sample)})

    return _explanations


def build_compliance_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=f"{spec.name}_compliance_report",
        deps=[dg.AssetKey(f"{spec.name}_backtest"), dg.AssetKey(f"{spec.name}_explanations")],
        owners=[spec.owner],
        kinds={"html"},
        pool=WAREHOUSE_POOL,
        description=(
            f"The compliance report of the newest {spec.name} version (HTML + markdown in its MLflow run): model "
            "card, lineage, scenario results vs baselines, SHAP summary, drift status, the promotion-policy "
            "evaluation with every threshold. Opens a PENDING_REVIEW sign-off (`mlops reviews approve`)."
        ),
    )
    def _report(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        tracking = mlflow.tracking()
        client = tracking.client()
        mv = newest_version(tracking, spec.name)
        version = str(mv.version)
        manifest = json.loads(tracking.read_text_artifact(mv.run_id, "manifest.json"))
        card = tracking.read_text_artifact(mv.run_id, "model_card.md")
        artifacts = {a.path for a in client.list_artifacts(mv.run_id, "backtest")}
        backtest_md = tracking.read_text_artifact(mv.run_id, "backtest/comparison.md")
        equity = {
            Path(p).stem.removeprefix("equity_"): _read_bytes(tracking, mv.run_id, p)
            for p in sorted(artifacts)
            if p.endswith(".png")
        }
        shap_files = {a.path for a in client.list_artifacts(mv.run_id, "explanations")}
        shap_ok = "explanations/shap_summary.png" in shap_files
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            metrics = promotion.observed_metrics(
                client, lifecycle.conn, spec.name, version, spec, CATALOG, load_drift_policy_file()
            )
            evaluation_result = policy.evaluate(
                load_promotion_policy(), model=spec.name, strategy=spec.strategy, metrics=metrics
            )
            inputs = compliance.ReportInputs(
                model=spec.name,
                version=version,
                model_card_md=card,
                manifest=manifest,
                feature_views=spec.feature_views,
                backtest_md=backtest_md,
                equity_pngs=equity,
                shap_md=tracking.read_text_artifact(mv.run_id, "explanations/importance.md") if shap_ok else "",
                shap_png=_read_bytes(tracking, mv.run_id, "explanations/shap_summary.png") if shap_ok else None,
                shap_error=None if shap_ok else "no SHAP artifacts for this version (see the explanations asset)",
                drift_status=f"drift of the newest day vs its training data: {metrics['drift_severity']}",
                policy=evaluation_result,
                review_status="PENDING_REVIEW",
            )
            report_md, report_html = compliance.render_markdown(inputs), compliance.render_html(inputs)
            log_files(tracking, mv.run_id, {"report.html": report_html, "report.md": report_md}, "compliance")
            uri = f"{client.get_run(mv.run_id).info.artifact_uri}/compliance/report.html"
            lifecycle.request_review(spec.name, version, report_uri=uri, actor=PIPELINE_ACTOR)
        client.set_model_version_tag(spec.name, version, "compliance_report", "compliance/report.html")
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "review_status": "PENDING_REVIEW",
                "policy_passed": evaluation_result.passed,
                "report": dg.MetadataValue.url(uri),
                "policy_evaluation": dg.MetadataValue.md(compliance.policy_markdown(evaluation_result)),
                "report_markdown": dg.MetadataValue.md(report_md),
            }
        )

    return _report


def _read_bytes(tracking: Tracking, run_id: str, path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(tracking.client().download_artifacts(run_id, path, tmp)).read_bytes()


evaluation_assets = [
    build(spec)
    for spec in SPECS.values()
    for build in (build_backtest_asset, build_explanations_asset, build_compliance_asset)
]
