"""The prompt registration assets as Dagster runs them (real instance, MLflow store, warehouse): each registers the
catalog's version once and stores a prompt card per version in MLflow, linked from the asset's metadata; the card
shows the template's diff, evaluations against thresholds, approvals with actors and the audit-chain head, with
every value escaped in HTML."""

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.defs.prompts.checks import prompt_lifecycle_check
from mlops_pipelines.defs.prompts.registration import registration_asset, registrations
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
from mlops_pipelines.lib.prompts.card import CARD_HTML, CARD_MD, build_card, render_html
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, record_evaluation
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle
from mlops_pipelines.resources import MlflowResource, WarehouseResource

NAME = "market_summary"


@pytest.fixture
def resources(tmp_path: Path, mlflow_template: Path) -> dict[str, object]:
    (tmp_path / "mlflow").mkdir()
    shutil.copy(mlflow_template, tmp_path / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"), audit_key_file=str(tmp_path / "audit.key")),
        "mlflow": MlflowResource(tracking_uri=uri, registry_uri=uri, artifact_root=str(tmp_path / "artifacts")),
    }


def test_one_registration_asset_per_prompt_of_the_library() -> None:
    keys = {a.key.to_user_string() for a in registrations}
    assert keys == {f"prompts/{name}_registration" for name in load_prompts()}


def test_registration_and_the_prompt_card(resources: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = load_prompts()[NAME]
    asset, check = registration_asset(prompt), prompt_lifecycle_check(NAME)
    with dg.instance_for_test() as instance:
        first = dg.materialize([asset, check], resources=resources, instance=instance)
        again = dg.materialize([asset], resources=resources, instance=instance)
    assert [c.passed for c in first.get_asset_check_evaluations()] == [True]
    meta = first.asset_materializations_for_node(asset.op.name)[0].metadata
    assert (meta["prompt_version"].value, meta["newly_registered"].value, meta["lifecycle_state"].value) == (
        "1",
        True,
        "DRAFT",
    )
    assert again.asset_materializations_for_node(asset.op.name)[0].metadata["newly_registered"].value is False
    assert CARD_HTML in str(meta["card"].value) and "Never evaluated" in str(meta["prompt_card"].value)

    warehouse, mlflow = resources["warehouse"], resources["mlflow"]
    assert isinstance(warehouse, WarehouseResource) and isinstance(mlflow, MlflowResource)
    tracking: Tracking = mlflow.tracking()
    # v2: a hostile template change, evaluated, staged, approved; its card shows all of it
    hostile = prompt.template + "<script>alert(1)</script>\n"
    v2 = prompt.model_copy(update={"version": 2, "template": hostile})
    monkeypatch.setattr("mlops_pipelines.defs.prompts.registration.load_prompts", lambda: {NAME: v2})
    with open_lifecycle(tracking.client(), warehouse.path, warehouse.audit_key_file, kind=PromptLifecycle) as lc:
        lc.register_version(v2, actor="author", reason="v2")
        evaluation = PromptEvaluation(
            uuid.uuid4().hex,
            NAME,
            "2",
            True,
            {"fact_precision": 0.97, "toxicity": 0.01},
            {"min_fact_precision": 0.95, "max_toxicity": 0.1},
            [],
            "recorded:demo.jsonl",
            datetime(2026, 2, 14, tzinfo=UTC),
        )
        record_evaluation(lc.conn, evaluation)
        lc.stage(NAME, "2", evaluation, actor="ops")
        lc.approve(NAME, "2", approver="alice", comment="scores read")
        head = lc.record(NAME).head
    with dg.instance_for_test() as instance:
        third = dg.materialize([asset], resources=resources, instance=instance)
    meta = third.asset_materializations_for_node(asset.op.name)[0].metadata
    assert meta["prompt_version"].value == "2" and {"card_v1", "card_v2"} <= set(meta)
    with open_lifecycle(tracking.client(), warehouse.path, warehouse.audit_key_file, kind=PromptLifecycle) as lc:
        run_id = lc.version(NAME, "2").tags["card_run_id"]
    markdown = tracking.read_text_artifact(run_id, CARD_MD)
    page = tracking.read_text_artifact(run_id, CARD_HTML)
    assert "+<script>alert(1)</script>" in markdown  # the diff against v1
    assert "| fact_precision | 0.97 | min_fact_precision=0.95 |" in markdown
    assert "- alice at " in markdown and "scores read" in markdown
    assert f"Head of the prompt's chain: `{head}`" in markdown and "all rows verify" in markdown
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "State **STAGING** (aliases: staging)" in markdown


def test_a_card_reports_a_broken_chain(resources: dict[str, object]) -> None:
    warehouse, mlflow = resources["warehouse"], resources["mlflow"]
    assert isinstance(warehouse, WarehouseResource) and isinstance(mlflow, MlflowResource)
    with open_lifecycle(
        mlflow.tracking().client(), warehouse.path, warehouse.audit_key_file, kind=PromptLifecycle
    ) as lc:
        lc.register_version(load_prompts()[NAME], actor="author", reason="v1")
        lc.conn.execute("UPDATE governance.model_audit_log SET actor = 'mallory' WHERE seq = 1")
        card = build_card(lc, NAME, "1")
    assert any("audit row 1 was changed" in p for p in card.problems)
    assert "Verification PROBLEMS" in render_html(card)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [registration_asset(load_prompts()[NAME]), prompt_lifecycle_check(NAME)],
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success  # registering on a broken chain is refused (InconsistentLifecycle)
    with dg.instance_for_test() as instance:
        (evaluation,) = dg.materialize(
            [registration_asset(load_prompts()[NAME]), prompt_lifecycle_check(NAME)],
            resources=resources,
            instance=instance,
            selection=dg.AssetSelection.all_asset_checks(),
        ).get_asset_check_evaluations()
    assert not evaluation.passed and "audit row 1 was changed" in str(evaluation.metadata["problems"].value)
