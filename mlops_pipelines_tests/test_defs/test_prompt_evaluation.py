"""The prompt evaluation assets as Dagster runs them (real instance, MLflow store, warehouse): the registered
version answered on its evaluation set, judged, recorded; only a passing verdict lets it leave TRAINED."""

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_pipelines.catalog.prompt_evaluation import RECORDED_RESPONSES_DIR, load_prompt_cases
from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.defs.prompts.evaluation import evaluation_asset, evaluations
from mlops_pipelines.defs.prompts.registration import registration_asset
from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
from mlops_pipelines.lib.prompts.library import render
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle, request_promotion
from mlops_pipelines.resources import MlflowResource, PromptResponsesResource, WarehouseResource

NAME = "market_summary"


def test_every_evaluation_case_renders_with_its_prompt_and_checks_the_prompts_own_format() -> None:
    """The evaluation sets and the library are two files per prompt: every case must render with the library's
    template (no missing or extra variable) and judge the output form the prompt itself declares."""
    assert {a.key.to_user_string() for a in evaluations} == {f"prompts/{n}_evaluation" for n in load_prompts()}
    for name, prompt in load_prompts().items():
        cases = load_prompt_cases(name)
        for case in cases.cases:
            assert render(prompt, case.variables), case.id
        assert cases.format.required_sections == prompt.output.required_sections, name
        assert cases.format.json_schema == prompt.output.json_schema, name


def _resources(tmp_path: Path, mlflow_template: Path, recorded: Path) -> dict[str, object]:
    (tmp_path / "mlflow").mkdir(parents=True)
    shutil.copy(mlflow_template, tmp_path / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"), audit_key_file=str(tmp_path / "audit.key")),
        "mlflow": MlflowResource(tracking_uri=uri, registry_uri=uri, artifact_root=str(tmp_path / "artifacts")),
        "prompt_responses": PromptResponsesResource(recorded_dir=str(recorded)),
    }


def _with_a_made_up_number(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The recorded answers with the first one stating returns and a volatility its context never had (three made-up
    numbers: its fact precision, 13 of 16, ranks among the version's worst results); and that answer."""
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    lines = (RECORDED_RESPONSES_DIR / f"{NAME}.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    for true, made_up in (("+4.0%", "+9.7%"), ("4.8%", "8.8%"), ("77%", "97%")):
        assert true in first["response"]
        first["response"] = first["response"].replace(true, made_up)
    (recorded / f"{NAME}.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return recorded, first


def _evaluate_and_stage(resources: dict[str, object]) -> tuple[dg.ExecuteInProcessResult, str]:
    prompt = load_prompts()[NAME]
    assets = [registration_asset(prompt), evaluation_asset(prompt)]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance)
    warehouse, mlflow = resources["warehouse"], resources["mlflow"]
    assert isinstance(warehouse, WarehouseResource) and isinstance(mlflow, MlflowResource)
    with open_lifecycle(
        mlflow.tracking().client(), warehouse.path, warehouse.audit_key_file, kind=PromptLifecycle
    ) as lifecycle:
        assert isinstance(lifecycle, PromptLifecycle)
        state = request_promotion(
            lifecycle, NAME, str(prompt.version), to="staging", actor="olga", reason="test", via="the test"
        )
    return result, state


@pytest.mark.slow
def test_the_recorded_answers_pass_and_the_version_can_be_staged(tmp_path: Path, mlflow_template: Path) -> None:
    result, state = _evaluate_and_stage(_resources(tmp_path, mlflow_template, RECORDED_RESPONSES_DIR))
    (check,) = result.get_asset_check_evaluations()
    meta = result.asset_materializations_for_node(evaluation_asset(load_prompts()[NAME]).op.name)[0].metadata
    assert check.passed and meta["passed"].value is True and state == "STAGING"
    assert meta["score_fact_precision"].value == 1.0 and meta["score_injection_leaks"].value == 0
    # this warehouse holds no market data: the recorded contexts are judged as given, and it says so
    assert str(meta["context_matches_warehouse"].value).startswith("0 of ")


@pytest.mark.slow
def test_a_made_up_number_fails_the_asset_check_and_keeps_the_version_in_trained(
    tmp_path: Path, mlflow_template: Path
) -> None:
    recorded, first = _with_a_made_up_number(tmp_path)
    result, state = _evaluate_and_stage(_resources(tmp_path / "run", mlflow_template, recorded))
    (check,) = result.get_asset_check_evaluations()
    meta = result.asset_materializations_for_node(evaluation_asset(load_prompts()[NAME]).op.name)[0].metadata
    assert not check.passed and meta["passed"].value is False and state == "TRAINED"
    assert "9.7" in str(meta["failures"].value) and first["case_id"] in str(meta["failures"].value)


def test_the_worst_examples_reach_the_prompt_card(tmp_path: Path, mlflow_template: Path) -> None:
    """A card shows the worst (case, scorer) results of each evaluation, not only the aggregates."""
    from mlops_pipelines.catalog.prompt_evaluation import load_prompt_policy_file
    from mlops_pipelines.lib.prompts.card import build_card, render_html, render_markdown
    from mlops_pipelines.lib.prompts.evaluation_run import run_evaluation
    from mlops_pipelines.lib.prompts.responses import RecordedResponses

    recorded, first = _with_a_made_up_number(tmp_path)
    resources = _resources(tmp_path, mlflow_template, recorded)
    warehouse, mlflow = resources["warehouse"], resources["mlflow"]
    assert isinstance(warehouse, WarehouseResource) and isinstance(mlflow, MlflowResource)
    with open_lifecycle(
        mlflow.tracking().client(), warehouse.path, warehouse.audit_key_file, kind=PromptLifecycle
    ) as lifecycle:
        assert isinstance(lifecycle, PromptLifecycle)
        lifecycle.register_version(load_prompts()[NAME], actor="author", reason="v1")
        run = run_evaluation(
            lifecycle.prompt(NAME, "1"),
            load_prompt_cases(NAME),
            RecordedResponses(recorded),
            load_prompt_policy_file(),
            conn=lifecycle.conn,
            views=[],
        )
        card = build_card(lifecycle, NAME, "1")
    worst = {(w["case_id"], w["scorer"]): w for w in run.evaluation.worst}
    assert run.evaluation.worst[0]["case_id"] == first["case_id"]  # the made-up number's answer is the worst
    assert (
        worst[first["case_id"], "fact_precision"]["value"] < 1
        and "9.7" in worst[first["case_id"], "fact_precision"]["detail"]
    )
    assert card.evaluations[0].worst == run.evaluation.worst  # stored with the verdict, read back
    assert "Worst examples" in render_markdown(card) and first["case_id"] in render_html(card)
