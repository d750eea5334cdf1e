"""The prompt routes' contract against a real uvicorn process on 127.0.0.1 and real stores (MLflow prompt
registry, DuckDB audit log and evaluations): 200/201, 401/403 (tokens, four eyes), 404, 409 (no passing
evaluation), 422 (variables, templates); creating a version never edits one."""

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.lib.governance import tokens
from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
from mlops_pipelines.lib.prompts.evaluation_results import PromptEvaluation, record_evaluation
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_serving.conftest import Server, Stack, serving
from mlops_pipelines_tests.test_serving.test_api import problem

pytestmark = pytest.mark.slow  # one server process for the module, started once
NAME = "market_summary"  # v1 evaluated (passed): staged, approved, promoted by the lifecycle test
UNTOUCHED = "signal_explanation"  # v1 never evaluated, never changed by a test: what the reads check
FAILED = "compliance_note_draft"  # v1 evaluated and failed
VARIABLES = {"symbol": "SYM01", "as_of": "2026-02-14T12:00:00Z", "context": "ret_24b: 0.012"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Stack:
    """MLflow and the warehouse with the library's prompts registered by 'author', NAME's v1 evaluated (passed)
    and FAILED's (failed). Each test reads or changes its own prompt, so they run in any order."""
    root = tmp_path_factory.mktemp("prompt_api")
    data = root / "data"
    (data / "mlflow").mkdir(parents=True)
    shutil.copy(mlflow_template, data / "mlflow" / "mlflow.db")
    env = {"MLOPS_DATA_DIR": str(data), "MLOPS_SERVE_MODELS": "no_model_served"}
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("MLOPS_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
    built = Stack(root, env, settings, [], pd.DataFrame())
    with open_lifecycle(
        built.tracking().client(), settings.warehouse_path, settings.audit_key_file, kind=PromptLifecycle
    ) as lifecycle:
        for prompt in load_prompts().values():
            lifecycle.register_version(prompt, actor="author", reason="catalog")
        for name, passed in ((NAME, True), (FAILED, False)):
            failures = [] if passed else ["toxicity 0.9 > 0.1"]
            evaluation = PromptEvaluation(
                uuid.uuid4().hex, name, "1", passed, {"toxicity": 0.0}, {}, failures, "recorded:test", datetime.now(UTC)
            )
            record_evaluation(lifecycle.conn, evaluation)
    return built


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Server]:
    with serving(stack, "prompts", ready=False) as running:
        yield running


def token(stack: Stack, actor: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.create(stack.settings.serve_tokens_file, actor=actor, role=role)[1]}"}


def call(server: Server, method: str, path: str, body: object = None, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1/prompts{path}", json=body, timeout=120, **kwargs)  # type: ignore[arg-type]


def test_reads_and_render(server: Server) -> None:
    listed = {p["name"]: p for p in call(server, "GET", "").json()}
    assert set(listed) == set(load_prompts()) and all(p["governance"] == [] for p in listed.values())
    assert listed[UNTOUCHED]["states"] == {"1": "DRAFT"}
    detail = call(server, "GET", f"/{UNTOUCHED}").json()
    assert detail["latest"]["template"] == load_prompts()[UNTOUCHED].template
    (version,) = call(server, "GET", f"/{UNTOUCHED}/versions").json()
    assert (version["version"], version["evaluation"], version["state"], version["author"]) == (
        "1",
        None,
        "DRAFT",
        "author",
    )
    assert call(server, "GET", f"/{FAILED}/versions").json()[0]["evaluation"] == "failed"
    problem(call(server, "GET", "/no_such_prompt"), 404)
    problem(call(server, "GET", f"/{NAME}/versions/9"), 404)

    rendered = call(server, "POST", f"/{NAME}/render", {"variables": VARIABLES, "version": "1"})
    assert rendered.status_code == 200 and "Summarize the state of SYM01" in rendered.json()["text"]
    assert rendered.json()["model"]["max_tokens"] == 400
    missing = problem(call(server, "POST", f"/{NAME}/render", {"variables": {"symbol": "x"}, "version": "1"}), 422)
    assert "missing variable 'as_of'" in missing["detail"]
    extra = {"variables": {**VARIABLES, "desk": "fx"}, "version": "1"}
    assert "unknown variable 'desk'" in problem(call(server, "POST", f"/{NAME}/render", extra), 422)["detail"]
    no_production = call(server, "POST", f"/{UNTOUCHED}/render", {"variables": {}})
    assert "holds the alias 'production'" in problem(no_production, 404)["detail"]
    problem(call(server, "POST", f"/{NAME}/render", {"variables": VARIABLES, "version": "x1"}), 422)


def test_creating_a_version_writes_a_new_one(server: Server, stack: Stack) -> None:
    spec = load_prompts()[NAME].model_dump(mode="json", exclude={"name", "version"})
    new = {**spec, "template": spec["template"] + "Keep it under 100 words.\n", "reason": "shorter"}
    problem(call(server, "POST", f"/{NAME}/versions", new), 401)
    problem(call(server, "POST", f"/{NAME}/versions", new, headers=token(stack, "vic", "viewer")), 403)
    operator = token(stack, "writer", "operator")
    hostile = {**new, "template": new["template"] + "{{ secret_key }}"}
    refused = problem(call(server, "POST", f"/{NAME}/versions", hostile, headers=operator), 422)
    assert "uses undeclared variable 'secret_key'" in refused["detail"]
    bad_name = problem(call(server, "POST", "/Bad'Name/versions", new, headers=operator), 422)
    assert 'prompt "Bad\'Name"' in bad_name["detail"] and "key 'name'" in bad_name["detail"]
    created = call(server, "POST", f"/{NAME}/versions", new, headers=operator)
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["author"], created.json()["state"]) == ("2", "writer", "DRAFT")
    versions = call(server, "GET", f"/{NAME}/versions").json()
    assert versions[0]["content_sha256"] == load_prompts()[NAME].content_hash()  # v1 untouched
    v2 = call(server, "GET", f"/{NAME}/versions/2").json()
    assert v2["spec"]["template"].endswith("Keep it under 100 words.\n") and v2["state"] == "DRAFT"


def test_promote_and_approve_with_four_eyes(server: Server, stack: Stack) -> None:
    operator = token(stack, "olga", "operator")
    staged = call(server, "POST", f"/{NAME}/promote", {"version": "1", "to": "staging"}, headers=operator)
    assert staged.status_code == 200 and staged.json()["state"] == "STAGING"
    never = call(server, "POST", f"/{UNTOUCHED}/promote", {"version": "1", "to": "staging"}, headers=operator)
    assert "never evaluated" in problem(never, 409)["detail"]
    failed = call(server, "POST", f"/{FAILED}/promote", {"version": "1", "to": "staging"}, headers=operator)
    assert "stays TRAINED: evaluation failed: toxicity 0.9 > 0.1" in problem(failed, 409)["detail"]
    problem(call(server, "POST", f"/{NAME}/promote", {"version": "7"}, headers=operator), 404)
    problem(call(server, "POST", f"/{NAME}/promote", {"version": "1", "to": "heaven"}, headers=operator), 422)

    approve = {"version": "1", "comment": "evaluation read"}
    problem(call(server, "POST", f"/{NAME}/approve", approve, headers=operator), 403)  # an operator is no approver
    own = problem(call(server, "POST", f"/{NAME}/approve", approve, headers=token(stack, "author", "approver")), 403)
    assert "'author' authored this version" in own["detail"]
    approved = call(server, "POST", f"/{NAME}/approve", approve, headers=token(stack, "alice", "approver"))
    assert approved.status_code == 200 and approved.json()["actor"] == "alice"

    to_production = {"version": "1", "to": "production"}
    same = call(server, "POST", f"/{NAME}/promote", to_production, headers=token(stack, "alice", "operator"))
    assert problem(same, 403)["check"] == "four_eyes"  # the approver cannot also request it
    promoted = call(server, "POST", f"/{NAME}/promote", to_production, headers=operator)
    assert promoted.status_code == 200 and promoted.json()["state"] == "PRODUCTION"
    rendered = call(server, "POST", f"/{NAME}/render", {"variables": VARIABLES})
    assert rendered.json()["version"] == "1"
    assert {p["name"]: p for p in call(server, "GET", "").json()}[NAME]["production"] == "1"
