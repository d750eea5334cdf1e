"""Training, promotion gate and the operator jobs, materialized on a real Dagster instance."""

import dagster as dg
import pytest

from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines_tests.test_defs.conftest import run_job, settings_lifecycle, settings_tracking

pytestmark = pytest.mark.slow
DAYS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-20"}


def test_training_job_then_operator_jobs(definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
    run_job(definitions, instance, "ingestion_job", tags=DAYS)
    run_job(definitions, instance, "features_job")
    result = run_job(definitions, instance, "training_job")
    meta = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    model_meta = meta["direction_classifier"]
    assert model_meta["model_version"].value == "1"
    assert isinstance(model_meta["test_auc"].value, float)  # numeric: the UI plots it across runs
    assert model_meta["mlflow_run"].value.startswith("http://")
    assert "data:image/png;base64," in model_meta["feature_importance"].value
    assert meta["training/direction_classifier_dataset"]["dataset_hash"].value == model_meta["dataset_hash"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        f"{name}_{check}": True
        for name in ("direction_classifier", "volatility_forecaster")
        for check in ("lifecycle_consistent", "explanations_available")
    }
    report = meta["direction_classifier_compliance_report"]
    assert report["review_status"].value == "PENDING_REVIEW"
    # a link a browser opens: the report in the MLflow UI's artifact view (not the file:// artifact URI)
    assert report["report"].value.startswith("http://127.0.0.1:5000/#/experiments/")
    assert report["report"].value.endswith("/artifacts/compliance/report.html")
    assert report["report_artifact_uri"].value.endswith("/compliance/report.html")
    backtest = meta["direction_classifier_backtest"]
    assert "| holdout | candidate |" in backtest["comparison"].value
    assert isinstance(backtest["sharpe_excess_vs_buy_and_hold"].value, float)

    # a failing explanation is reported on its asset (check failed, error in metadata); the run still succeeds
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shap exploded")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mlops_pipelines.lib.evaluation.explanations.explain", broken)
        explained = definitions.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("direction_classifier_explanations")]
        )
    assert explained.success
    [failed] = explained.get_asset_check_evaluations()
    assert not failed.passed and "shap exploded" in failed.metadata["error"].value

    model = "direction_classifier"
    gate = meta[f"{model}_promotion"]
    assert gate["lifecycle_state"].value == ("STAGING" if gate["policy_passed"].value else "TRAINED")
    if gate["lifecycle_state"].value == "TRAINED":
        # on this tiny market the policy may fail; an operator re-gates with a request override (audited)
        permissive = PromotionPolicy.model_validate({"defaults": {"min_test_rows": 1}})
        with settings_lifecycle() as lifecycle:
            result = evaluate(permissive, model=model, strategy="directional", metrics={"test_rows": 10})
            assert lifecycle.gate(model, "1", result, actor="operator") == "STAGING"

    def op_config(op: str, **values: object) -> dict:
        return {"ops": {op: {"config": values}}}

    denied = run_job(
        definitions,
        instance,
        "approve_model_job",
        raise_on_error=False,
        run_config=op_config("approve_model", model=model, version="1", actor="pipeline:dagster"),
    )
    assert not denied.success  # the trainer cannot approve
    run_job(
        definitions,
        instance,
        "approve_model_job",
        run_config=op_config("approve_model", model=model, version="1", actor="reviewer", reason="ok"),
    )
    rejected_by_trainer = run_job(
        definitions,
        instance,
        "review_model_job",
        raise_on_error=False,
        run_config=op_config(
            "review_model", model=model, version="1", actor="pipeline:dagster", approve=True, reason="self"
        ),
    )
    assert not rejected_by_trainer.success
    reviewed = run_job(
        definitions,
        instance,
        "review_model_job",
        run_config=op_config(
            "review_model", model=model, version="1", actor="compliance", approve=True, reason="report reviewed"
        ),
    )
    [observation] = reviewed.asset_observations_for_node("review_model")
    assert observation.asset_key == dg.AssetKey(f"{model}_compliance_report")
    assert observation.metadata["review_status"].value == "APPROVED"
    with settings_lifecycle() as lifecycle:  # the stored report shows the sign-off
        page = settings_tracking().read_text_artifact(lifecycle.run_id(model, "1"), "compliance/report.html")
    assert "<b>APPROVED</b> by compliance on 20" in page and '"report reviewed"' in page
    run_job(
        definitions,
        instance,
        "promote_model_job",
        run_config=op_config("promote_model", model=model, version="1", actor="operator"),
    )
    with settings_lifecycle() as lifecycle:
        assert lifecycle.state(model, "1") == "PRODUCTION"
        assert lifecycle.consistency_problems(model) == []
    run_job(
        definitions,
        instance,
        "retire_model_job",
        run_config=op_config("retire_model", model=model, version="1", actor="operator", reason="test"),
    )
    with settings_lifecycle() as lifecycle:
        assert lifecycle.state(model, "1") == "RETIRED"
