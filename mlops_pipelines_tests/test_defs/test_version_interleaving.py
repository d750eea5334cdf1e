"""A training run and another that trains the same model meanwhile: each evaluates and gates its own version."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.lib.evaluation import replay
from mlops_pipelines_tests.test_defs.conftest import DAY_RANGE, run_job, settings_lifecycle

pytestmark = pytest.mark.slow
MODEL = "direction_classifier"
CHAIN = [
    dg.AssetKey(["training", f"{MODEL}_dataset"]),
    dg.AssetKey(MODEL),
    dg.AssetKey(f"{MODEL}_backtest"),
    dg.AssetKey(f"{MODEL}_explanations"),
    dg.AssetKey(f"{MODEL}_compliance_report"),
    dg.AssetKey(f"{MODEL}_promotion"),
]


def training_job() -> dg.JobDefinition:
    """For ``dg.reconstructable``: re-execution needs a job it can load again."""
    from mlops_pipelines.definitions import defs

    return defs().resolve_job_def("training_job")


def test_evaluation_and_gate_act_on_the_version_their_run_trained(
    definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_job(definitions, instance, "ingestion_job", tags=DAY_RANGE)
    run_job(definitions, instance, "features_job")
    in_process = {"execution": {"config": {"in_process": {}}}}
    job = dg.reconstructable(training_job)

    # run A trains v1, then its backtest fails (a crash, a timeout) before evaluating it
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("backtest worker lost")

    with monkeypatch.context() as patch:
        patch.setattr(replay, "replay_version", crash)
        first = dg.execute_job(job, instance=instance, asset_selection=CHAIN, run_config=in_process)
    assert not first.success
    [explained] = [
        e for e in first.get_asset_materialization_events() if "explanations" in e.asset_key.to_user_string()
    ]
    assert explained.materialization.metadata["model_version"].value == "1"  # it does not need the backtest
    # meanwhile run B trains the same model: v2 is now the newest registered version
    second = dg.execute_job(job, instance=instance, asset_selection=CHAIN[:2], run_config=in_process)
    assert second.success
    # run A resumes from its failure: backtest, report and gate are about v1, the version run A trained
    resumed = dg.execute_job(
        job,
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
        run_config=in_process,
    )
    assert resumed.success
    versions = {
        e.asset_key.to_user_string(): e.materialization.metadata["model_version"].value
        for e in resumed.get_asset_materialization_events()
    }
    assert versions == {f"{MODEL}_backtest": "1", f"{MODEL}_compliance_report": "1", f"{MODEL}_promotion": "1"}
    with settings_lifecycle() as lifecycle:
        gated = {r["version"] for r in lifecycle.history(MODEL) if r["policy_result"]}
        assert gated == {"1"} and lifecycle.state(MODEL, "2") == "TRAINED"
        assert lifecycle.review(MODEL, "1") is not None and lifecycle.review(MODEL, "2") is None
