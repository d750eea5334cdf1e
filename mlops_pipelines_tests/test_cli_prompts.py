"""`mlops prompts` against a real MLflow prompt registry and warehouse: the operator's flow with four eyes, a
failed or missing evaluation refused, rollback and retirement, render, and the lock's diff gate."""

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlops_pipelines.catalog.prompt_library import PROMPTS_DIR
from mlops_pipelines.cli import app
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, record_evaluation

runner = CliRunner()
NAME = "market_summary"


@pytest.fixture
def env(tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("MLOPS_AUDIT_KEY_FILE", str(tmp_path / "audit.key"))
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", tracking.tracking_uri)
    monkeypatch.setenv("MLOPS_MLFLOW_ARTIFACT_ROOT", tracking.artifact_root)
    return tmp_path / "w.duckdb"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def evaluate(db: Path, version: str, *, passed: bool) -> None:
    with warehouse.connect(db) as conn:
        record_evaluation(
            conn,
            PromptEvaluation(
                uuid.uuid4().hex,
                NAME,
                version,
                passed,
                {"canary_leaks": 0.0 if passed else 1.0},
                {"max_canary_leaks": 0},
                [] if passed else ["canary_leaks 1.0 > 0"],
                "recorded:test",
                datetime.now(UTC),
            ),
        )


def test_operator_flow_from_the_cli(env: Path) -> None:
    code, out = invoke("prompts", "register", "--actor", "author")
    assert code == 0 and f"{NAME} v1: registered (DRAFT)" in out and "signal_explanation v1" in out
    assert invoke("prompts", "register", NAME, "--actor", "author")[1] == f"{NAME} v1: already registered"
    code, out = invoke("prompts", "list", "--json")
    listed = {row["prompt"]: row for row in json.loads(out)}
    assert code == 0 and listed[NAME]["states"] == {"1": "DRAFT"} and listed[NAME]["governance"] == "ok"

    staging = ["prompts", "promote", NAME, "--version", "1", "--to", "staging", "--actor", "ops"]
    code, out = invoke(*staging)
    assert code == 1 and "never evaluated" in out  # missing evaluation: refused
    evaluate(env, "1", passed=False)
    code, out = invoke(*staging)
    assert code == 1 and "is now TRAINED" in out and "canary_leaks 1.0 > 0" in out  # failed: stays TRAINED
    evaluate(env, "1", passed=True)
    code, out = invoke(*staging)
    assert (code, out) == (0, f"{NAME} v1 is now STAGING")

    code, out = invoke("prompts", "approve", NAME, "--version", "1", "--actor", "author", "--comment", "mine")
    assert code == 1 and "authored this version and cannot approve it" in out
    assert invoke("prompts", "approve", NAME, "--version", "1", "--actor", "alice", "--comment", "ok")[0] == 0
    production = ["prompts", "promote", NAME, "--version", "1", "--to", "production"]
    code, out = invoke(*production, "--actor", "alice")
    assert code == 1 and "needs an approval" in out  # the approver cannot also request it
    assert invoke(*production, "--actor", "bob") == (0, f"{NAME} v1 is now PRODUCTION")

    code, out = invoke("prompts", "show", NAME, "--json")
    assert code == 0 and json.loads(out)[0]["state"] == "PRODUCTION"
    code, out = invoke("prompts", "history", NAME, "--json")
    history = json.loads(out)
    assert [r["action"] for r in history][-2:] == ["approval", "transition"]
    assert all(r["verified"] is True for r in history)

    code, out = invoke("prompts", "rollback", NAME, "--actor", "bob")
    assert code == 1 and "no previous production version" in out
    assert invoke("prompts", "retire", NAME, "--version", "1", "--actor", "bob")[0] == 0
    code, out = invoke("prompts", "show", NAME, "--version", "1", "--json")
    assert json.loads(out)["state"] == "RETIRED"

    code, out = invoke("prompts", "show", "no_such_prompt")
    assert code == 2 and "no registered prompt 'no_such_prompt'" in out
    code, out = invoke("prompts", "approve", NAME, "--version", "7", "--actor", "alice")
    assert code == 2 and "has no version '7'; its versions: 1" in out


def test_render_from_the_catalog_and_from_the_registry(env: Path) -> None:
    args = ["prompts", "render", NAME, "--var", "symbol=SYM1", "--var", "as_of=2026-02-14T12:00Z"]
    code, out = invoke(*args, "--var", "context=ret_24b: 0.012")
    assert code == 0 and "Summarize the state of SYM1 as of 2026-02-14T12:00Z" in out and "ret_24b: 0.012" in out
    code, out = invoke(*args)
    assert code == 2 and "missing variable 'context'" in out
    code, out = invoke(*args, "--var", "context=x", "--var", "desk=fx")
    assert code == 2 and "unknown variable 'desk'" in out
    invoke("prompts", "register", NAME, "--actor", "author")
    code, out = invoke(*args, "--var", "context=x", "--version", "1")
    assert code == 0 and "SYM1" in out


def test_the_diff_gate(tmp_path: Path) -> None:
    library = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, library)
    lock = tmp_path / "lock.json"
    paths = ["--path", str(lock), "--library", str(library)]
    assert invoke("prompts", "lock", *paths)[0] == 0
    assert invoke("prompts", "diff", *paths) == (0, "prompt library matches the lock")

    path = library / f"{NAME}.yaml"
    original = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**original, "owner": "another-desk", "tags": {"desk": "fx"}}))
    code, out = invoke("prompts", "diff", *paths)
    assert code == 0 and "metadata changed (no bump needed)" in out and "owner" in out

    path.write_text(yaml.safe_dump({**original, "template": original["template"] + "Be brief.\n"}))
    code, out = invoke("prompts", "diff", *paths)
    assert code == 1 and f"{NAME}: content changed without a version bump: template changed" in out
    settings = {**original["model"], "max_tokens": 800}
    path.write_text(yaml.safe_dump({**original, "model": settings}))
    code, out = invoke("prompts", "diff", *paths)
    assert code == 1 and "model.max_tokens: 400 -> 800" in out
    path.write_text(yaml.safe_dump({**original, "model": settings, "version": 2}))
    code, out = invoke("prompts", "diff", *paths)
    assert code == 0 and f"{NAME}: new version: v1 -> v2; model.max_tokens: 400 -> 800" in out


def test_the_committed_prompt_lock_passes_the_gate() -> None:
    assert invoke("prompts", "diff") == (0, "prompt library matches the lock")
