"""Prompt versions through the models' governance path, on a real MLflow prompt registry and a real DuckDB audit
log: register -> evaluate -> stage -> approve -> PRODUCTION with four eyes; a failed or missing evaluation keeps a
version from leaving TRAINED; an override is audited and its requester cannot approve; rollback and retirement;
forged audit rows and edited registry content are detected."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.lifecycle import (
    ApprovalRequired,
    InconsistentLifecycle,
    Lifecycle,
    LifecycleError,
    State,
    open_lifecycle,
)
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, latest_evaluation, record_evaluation
from mlops_pipelines.lib.prompts.library import Prompt
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle, PromptVersionConflict

NAME = "market_summary"


@contextmanager
def prompts(tracking: Tracking, tmp_path: Path) -> Iterator[PromptLifecycle]:
    db = tmp_path / "warehouse.duckdb"
    with open_lifecycle(tracking.client(), db, tmp_path / "audit.key", kind=PromptLifecycle) as lifecycle:
        yield lifecycle


def evaluated(lifecycle: PromptLifecycle, version: str, *, passed: bool) -> PromptEvaluation:
    evaluation = PromptEvaluation(
        evaluation_id=uuid.uuid4().hex,
        prompt=NAME,
        version=version,
        passed=passed,
        scores={"toxicity": 0.0, "fact_precision": 1.0 if passed else 0.5},
        thresholds={"min_fact_precision": 0.95},
        failures=[] if passed else ["fact_precision 0.5 < 0.95"],
        source="recorded:test.jsonl",
        evaluated_at=datetime.now(UTC),
    )
    record_evaluation(lifecycle.conn, evaluation)
    return evaluation


def bumped(prompt: Prompt, version: int) -> Prompt:
    template = prompt.template + f"\n(revision {version})"
    return prompt.model_copy(update={"version": version, "template": template})


def test_register_evaluate_stage_approve_production_with_four_eyes(tracking: Tracking, tmp_path: Path) -> None:
    prompt = load_prompts()[NAME]
    with prompts(tracking, tmp_path) as lifecycle:
        version, created = lifecycle.register_version(prompt, actor="author", reason="from the catalog")
        assert (version, created) == ("1", True)
        assert lifecycle.register_version(prompt, actor="author", reason="again") == ("1", False)  # idempotent
        assert lifecycle.state(NAME, "1") == State.DRAFT
        pv = lifecycle.version(NAME, 1)
        assert pv.template == prompt.template and (pv.model_config or {})["temperature"] == prompt.model.temperature
        assert lifecycle.prompt(NAME, "1") == prompt  # everything it was registered with, read back

        with pytest.raises(LifecycleError, match="never evaluated: it stays DRAFT"):
            lifecycle.stage(NAME, "1", latest_evaluation(lifecycle.conn, NAME, "1"), actor="ops")
        assert lifecycle.stage(NAME, "1", evaluated(lifecycle, "1", passed=True), actor="ops") == State.STAGING
        assert lifecycle.alias_version(NAME, "staging") == "1"

        with pytest.raises(ApprovalRequired, match="'author' authored this version"):
            lifecycle.approve(NAME, "1", approver="Author ", comment="mine")
        with pytest.raises(ApprovalRequired, match="PRODUCTION needs an approval"):
            lifecycle.promote_to_production(NAME, "1", actor="ops", reason="no approval yet")
        lifecycle.approve(NAME, "1", approver="alice", comment="read the evaluation")
        with pytest.raises(ApprovalRequired, match="other than the author .* and the requester \\('alice'\\)"):
            lifecycle.promote_to_production(NAME, "1", actor="alice", reason="my own approval")
        assert lifecycle.promote_to_production(NAME, "1", actor="bob", reason="go") is None
        assert lifecycle.state(NAME, "1") == State.PRODUCTION
        assert lifecycle.alias_version(NAME, "production") == "1"
        assert lifecycle.consistency_problems(NAME) == []
        assert [r["action"] for r in lifecycle.history(NAME)] == [
            "register",
            "transition",
            "transition",
            "transition",
            "approval",
            "transition",
        ]
        # the prompt's rows never show up as a model's, nor a model's as a prompt's
        assert Lifecycle(lifecycle.client, lifecycle.conn, lifecycle._key).models() == []
        assert lifecycle.models() == [NAME]
        subjects = lifecycle.conn.execute(f"SELECT DISTINCT model FROM {AUDIT_TABLE}").fetchall()
        assert subjects == [(f"prompt:{NAME}",)]


def test_a_failed_evaluation_keeps_it_in_trained_and_an_override_is_a_second_pair_of_eyes(
    tracking: Tracking, tmp_path: Path
) -> None:
    prompt = load_prompts()[NAME]
    with prompts(tracking, tmp_path) as lifecycle:
        lifecycle.register_version(prompt, actor="author", reason="catalog")
        failed = evaluated(lifecycle, "1", passed=False)
        assert lifecycle.stage(NAME, "1", failed, actor="ops") == State.TRAINED
        assert lifecycle.stage(NAME, "1", failed, actor="ops") == State.TRAINED  # again: still refused
        assert lifecycle.alias_version(NAME, "staging") is None
        with pytest.raises(LifecycleError, match="TRAINED; only STAGING versions are approved"):
            lifecycle.approve(NAME, "1", approver="alice", comment="x")
        rejected = lifecycle.history(NAME)[-1]
        assert rejected["action"] == "gate_rejected" and "fact_precision 0.5 < 0.95" in rejected["reason"]

        assert lifecycle.stage(NAME, "1", failed, actor="carol", override_reason="desk accepts, ticket 42") == "STAGING"
        staged = lifecycle.history(NAME)[-1]
        assert staged["details"]["override_reason"] == "desk accepts, ticket 42"
        assert staged["policy_result"]["evaluation_passed"] is False
        with pytest.raises(ApprovalRequired, match="'carol' overrode its failed evaluation"):
            lifecycle.approve(NAME, "1", approver="carol", comment="my override")
        lifecycle.approve(NAME, "1", approver="alice", comment="override read")
        lifecycle.promote_to_production(NAME, "1", actor="bob", reason="go")
        assert lifecycle.consistency_problems(NAME) == []

        # a passing re-evaluation of a staged version keeps it; a failing one sends it back to TRAINED
        lifecycle.register_version(bumped(prompt, 2), actor="author", reason="v2")
        assert lifecycle.stage(NAME, "2", evaluated(lifecycle, "2", passed=True), actor="ops") == State.STAGING
        assert lifecycle.alias_version(NAME, "challenger") == "2"
        assert lifecycle.stage(NAME, "2", evaluated(lifecycle, "2", passed=False), actor="ops") == State.TRAINED
        assert lifecycle.alias_version(NAME, "staging") is None and lifecycle.alias_version(NAME, "challenger") is None


def test_rollback_and_retirement(tracking: Tracking, tmp_path: Path) -> None:
    prompt = load_prompts()[NAME]
    with prompts(tracking, tmp_path) as lifecycle:
        for number in (1, 2):
            version, _ = lifecycle.register_version(bumped(prompt, number), actor="author", reason="catalog")
            lifecycle.stage(NAME, version, evaluated(lifecycle, version, passed=True), actor="ops")
            lifecycle.approve(NAME, version, approver="alice", comment="ok")
            lifecycle.promote_to_production(NAME, version, actor="bob", reason="go")
        assert (lifecycle.state(NAME, "1"), lifecycle.state(NAME, "2")) == (State.STAGING, State.PRODUCTION)
        assert lifecycle.rollback(NAME, actor="bob", reason="v2 misbehaves") == "1"
        assert lifecycle.alias_version(NAME, "production") == "1" and lifecycle.state(NAME, "2") == State.STAGING
        lifecycle.retire(NAME, "1", actor="bob", reason="assistant turned off")
        assert lifecycle.state(NAME, "1") == State.RETIRED
        assert lifecycle.alias_version(NAME, "production") is None
        assert lifecycle.consistency_problems(NAME) == []


def test_a_registered_version_is_never_edited(tracking: Tracking, tmp_path: Path) -> None:
    prompt = load_prompts()[NAME]
    with prompts(tracking, tmp_path) as lifecycle:
        lifecycle.register_version(prompt, actor="author", reason="catalog")
        changed = prompt.model_copy(update={"template": prompt.template + " Be brief."})
        with pytest.raises(PromptVersionConflict, match="v1 is registered with other content .* v2"):
            lifecycle.register_version(changed, actor="author", reason="edit in place")
        with pytest.raises(PromptVersionConflict, match="this one is v2"):
            lifecycle.register_version(bumped(prompt, 3), actor="author", reason="skips v2")
        assert [str(v.version) for v in lifecycle.versions(NAME)] == ["1"]


def test_forged_rows_and_edited_registry_content_are_detected(tracking: Tracking, tmp_path: Path) -> None:
    prompt = load_prompts()[NAME]
    with prompts(tracking, tmp_path) as lifecycle:
        lifecycle.register_version(prompt, actor="author", reason="catalog")
        lifecycle.stage(NAME, "1", evaluated(lifecycle, "1", passed=True), actor="ops")
        # a forged approval, written straight into the warehouse: fails the chain and never counts
        row = lifecycle.history(NAME)[-1]
        lifecycle.conn.execute(
            f"INSERT INTO {AUDIT_TABLE} SELECT seq + 1, 'forged', occurred_at, 'alice', model, version, 'approval', "
            f"'STAGING', 'STAGING', 'ok', NULL, NULL, '[]', '{{}}', row_hash FROM {AUDIT_TABLE} WHERE seq = ?",
            [row["seq"]],
        )
        problems = lifecycle.consistency_problems(NAME)
        assert any("was changed, or a row before it removed" in p for p in problems), problems
        with pytest.raises(InconsistentLifecycle):
            lifecycle.promote_to_production(NAME, "1", actor="bob", reason="go")
        lifecycle.conn.execute(f"DELETE FROM {AUDIT_TABLE} WHERE operation_id = 'forged'")
        assert lifecycle.consistency_problems(NAME) == []
        # the template's spec edited behind the lifecycle's back (version tags are writable in MLflow)
        spec = lifecycle.version(NAME, "1").tags["prompt_spec"]
        assert '"## Positioning"' in spec
        lifecycle.client.set_prompt_version_tag(NAME, "1", "prompt_spec", spec.replace('"## Positioning"', '"## Buy"'))
        problems = lifecycle.consistency_problems(NAME)
        assert problems == ["v1: the content in MLflow differs from the content recorded at registration"]
        lifecycle.client.set_prompt_version_tag(NAME, "1", "prompt_spec", spec)
        assert lifecycle.consistency_problems(NAME) == []  # the placebo: put back, nothing to report
        lifecycle.client.set_prompt_version_tag(NAME, "1", "content_sha256", "0" * 64)
        problems = lifecycle.consistency_problems(NAME)
        assert problems == ["v1: MLflow tag content_sha256 differs from the value recorded at registration"]
