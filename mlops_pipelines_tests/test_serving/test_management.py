"""The management routes against a real uvicorn process on 127.0.0.1 and the real stores: version detail,
training sets, experiments, the on-demand backtest, and the approver's and reviewer's decisions. Each answers
what the matching ``mlops`` command prints for the same object (the same function behind both); errors are
problem documents (404 unknown or hostile ids, 422 malformed bodies and too-long windows, 401/403 tokens and
four-eyes, 409 illegal states)."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER
from mlops_pipelines.cli import app as cli_app
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.tracking import file_uri_path
from mlops_pipelines.lib.evaluation import backtest, replay
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.governance import compliance, tokens
from mlops_pipelines.lib.governance.promotion_policy import evaluate
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.training import train
from mlops_pipelines_tests.test_serving.conftest import MODEL, PASSING, Server, Stack, serving
from mlops_pipelines_tests.test_serving.test_api import bearer, problem

pytestmark = pytest.mark.slow  # one server process for the module, on a stack with bars, features and a trained model
DIRECTION = DIRECTION_CLASSIFIER.name  # v1: trained on the stored set, STAGING with a compliance review pending
HOSTILE = ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "1'%20OR%20'1'%3D'1", "x%22%3B%20DROP%20TABLE%20x%3B--", "%00"]


@pytest.fixture(scope="module")
def managed(stack: Stack, small_bars: pd.DataFrame) -> Stack:
    """The serving stack plus ten days of bars, every feature view materialized, a stored training set and a
    direction_classifier version trained on it (through the lifecycle, its report awaiting sign-off)."""
    catalog = load_catalog()
    with warehouse.connect(stack.settings.warehouse_path) as conn:
        market_bars.replace_all(conn, small_bars)
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
        data = datasets.build_training_set(conn, DIRECTION_CLASSIFIER, catalog)
        datasets.store_training_set(conn, DIRECTION_CLASSIFIER, data, run_id="dagster-run-7")
    booster = train(DIRECTION_CLASSIFIER, data).booster
    tracking = stack.tracking()
    views = {name: catalog.views[name].version for name in DIRECTION_CLASSIFIER.feature_views}
    tags = {"trained_by": "trainer", "dataset_hash": data.dataset_hash}
    with tracking.run(DIRECTION, run_name="direction", tags=tags) as run:
        run_id = run.info.run_id
        tracking.client().log_metric(run_id, "sharpe", 0.5)
        tracking.client().log_param(run_id, "num_leaves", "15")
        logged = tracking.log_booster(run_id, booster, data.split("train")[data.features].head(3))
        manifest = {"config": {"feature_views": views}, "feature_graph_hash": catalog.graph_hash(), "metrics": {}}
        tracking.log_dict(run_id, manifest, "manifest.json")
        pending = {"status": "PENDING_REVIEW"}
        tracking.log_files(
            run_id,
            {
                "report.html": f"<p>{compliance.status_html(pending)}</p><pre>body</pre>",
                "report.md": f"{compliance.status_markdown(pending)}\nbody\n",
            },
            compliance.FOLDER,
        )
    with stack.lifecycle() as lifecycle:
        lifecycle.register(
            DIRECTION,
            source=logged.model_uri,
            run_id=run_id,
            model_id=logged.model_id,
            tags={**tags, "artifact_sha256": logged.artifact_sha256, "feature_graph_hash": catalog.graph_hash()},
            actor="trainer",
            reason="test",
        )
        result = evaluate(PASSING, model=DIRECTION, strategy="s", metrics={"sharpe": 1.0})
        lifecycle.gate(DIRECTION, "1", result, actor="pipeline")
        lifecycle.request_review(DIRECTION, "1", report_uri="file:///report.html", actor="pipeline")
    stack.boosters[(DIRECTION, "1")] = booster
    return stack


@pytest.fixture(scope="module")
def server(managed: Stack) -> Iterator[Server]:
    with serving(managed) as running:
        yield running


@pytest.fixture
def cli_env(managed: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI in this process, on the served stack's stores."""
    for name, value in managed.env.items():
        monkeypatch.setenv(name, value)


def cli_json(*args: str) -> Any:
    """What ``mlops ARGS`` prints, parsed (the JSON document it writes on stdout)."""
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def get(server: Server, path: str) -> httpx.Response:
    answer = httpx.get(f"{server.url}{path}", timeout=120)
    assert answer.status_code != 500, server.log()
    return answer


def test_version_detail_is_what_the_cli_shows(server: Server, cli_env: None) -> None:
    for model, version in ((MODEL, "1"), (MODEL, "2"), (DIRECTION, "1")):
        answer = get(server, f"/api/v1/ml/lifecycle/models/{model}/{version}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == cli_json("models", "show", model, "--version", version, "--json")
    detail = get(server, f"/api/v1/ml/lifecycle/models/{MODEL}/1").json()
    assert (detail["state"], detail["aliases"], detail["tags"]["trained_by"]) == ("PRODUCTION", "production", "trainer")
    assert [a["approver"] for a in detail["approvals"]] == ["reviewer"]
    assert detail["compliance_review"]["reviewer"] == "compliance"
    actions = [h["action"] for h in detail["history"]]
    assert actions[:2] == ["register", "transition"] and "approval" in actions and "review_approved" in actions
    assert all(h["version"] == "1" and h["verified"] is True for h in detail["history"])
    assert detail["deployments"] == [] and detail["governance_problems"] == []
    direction = get(server, f"/api/v1/ml/lifecycle/models/{DIRECTION}/1").json()
    assert direction["lineage"]["dataset"]["dataset_id"] == direction["tags"]["dataset_hash"][:12]
    catalog = load_catalog()
    assert direction["lineage"]["feature_views"] == {
        v: catalog.views[v].version for v in DIRECTION_CLASSIFIER.feature_views
    }


def test_unknown_and_hostile_ids_are_404_problems(server: Server) -> None:
    paths = [
        "/api/v1/ml/lifecycle/models/nope/1",
        f"/api/v1/ml/lifecycle/models/{MODEL}/99",
        "/api/v1/features/datasets/nope",
        "/api/v1/ml/lifecycle/experiments/nope",
        "/api/v1/nothing/here",
    ]
    for hostile in HOSTILE:
        paths += [
            f"/api/v1/ml/lifecycle/models/{hostile}/1",
            f"/api/v1/ml/lifecycle/models/{MODEL}/{hostile}",
            f"/api/v1/features/datasets/{hostile}",
            f"/api/v1/ml/lifecycle/experiments/{hostile}",
        ]
    for path in paths:
        problem(get(server, path), 404)
    assert "its versions: 1, 2" in problem(get(server, f"/api/v1/ml/lifecycle/models/{MODEL}/99"), 404)["detail"]
    assert "known experiments:" in problem(get(server, "/api/v1/ml/lifecycle/experiments/nope"), 404)["detail"]
    # the placebo: the same routes on ids that exist answer
    assert get(server, f"/api/v1/ml/lifecycle/models/{MODEL}/1").status_code == 200
    assert get(server, f"/api/v1/ml/lifecycle/experiments/{MODEL}").status_code == 200


def test_datasets_are_what_the_cli_shows(server: Server, managed: Stack, cli_env: None) -> None:
    listed = get(server, "/api/v1/features/datasets").json()
    assert listed == cli_json("datasets", "list", "--json")
    [row] = listed
    assert row["model"] == DIRECTION and row["dagster_run_id"] == "dagster-run-7"
    assert row["row_count"] == row["train_rows"] + row["validation_rows"] + row["test_rows"] > 0
    catalog = load_catalog()
    assert row["feature_views"] == {v: catalog.views[v].version for v in DIRECTION_CLASSIFIER.feature_views}
    assert row["first_decision"] < row["last_decision"] and row["first_decision"].endswith("Z")
    detail = get(server, f"/api/v1/features/datasets/{row['dataset_id']}").json()
    assert detail == cli_json("datasets", "show", row["dataset_id"])
    assert [(v["model"], v["version"]) for v in detail["model_versions"]] == [(DIRECTION, "1")]
    assert {k: v for k, v in detail.items() if k != "model_versions"} == row


def test_experiment_detail_is_what_the_cli_shows(server: Server, managed: Stack, cli_env: None) -> None:
    detail = get(server, f"/api/v1/ml/lifecycle/experiments/{DIRECTION}").json()
    assert detail["runs"] == cli_json("experiments", "show", DIRECTION, "--json")
    [run] = detail["runs"]
    assert run["metrics"]["sharpe"] == 0.5 and run["params"] == {"num_leaves": "15"}
    assert run["tags"]["trained_by"] == "trainer" and run["status"] == "FINISHED"
    experiment_id = managed.tracking().experiment_id(DIRECTION)
    assert detail["experiment_id"] == experiment_id
    assert run["link"] == f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run['run_id']}"
    assert len(get(server, f"/api/v1/ml/lifecycle/experiments/{MODEL}").json()["runs"]) == 2


def test_backtest_replays_a_window_against_the_baselines(server: Server, managed: Stack) -> None:
    url = f"{server.url}/api/v1/ml/{DIRECTION}/backtest"
    operator = tokens.create(managed.settings.serve_tokens_file, actor="olga", role="operator")[1]
    window = {"start": "2026-01-06T00:00:00Z", "end": "2026-01-10T00:00:00Z"}
    answer = httpx.post(url, json=window, headers=bearer(operator), timeout=300)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["version"], body["start"], body["end"], body["in_sample"]) == (
        "1",
        "2026-01-06T00:00:00Z",
        "2026-01-10T00:00:00Z",
        True,  # the window lies inside its training split
    )
    assert set(body["metrics"]) == {replay.CANDIDATE, replay.BUY_AND_HOLD, replay.MOMENTUM}
    with warehouse.connect(managed.settings.warehouse_path, read_only=True) as conn:  # recomputed from the raw bars
        bars = market_bars.closes(conn, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC))
        assert not warehouse.table_exists(conn, replay.BACKTEST_TABLE)  # nothing the gate reads is written
    returns = backtest.bar_returns_from_bars(bars)
    returns = returns[(returns.index >= pd.Timestamp(window["start"])) & (returns.index < pd.Timestamp(window["end"]))]
    expected = backtest.run_backtest(backtest.buy_and_hold_positions(returns), returns, cost_bps=2.0)
    assert body["metrics"][replay.BUY_AND_HOLD]["sharpe"] == pytest.approx(
        backtest.performance_metrics(expected, 8760)["sharpe"], rel=1e-9
    )
    assert body["bars"] == len(returns) and body["metrics"][replay.CANDIDATE]["turnover"] > 0
    png = Path(file_uri_path(body["equity_png_uri"]))
    assert png.read_bytes().startswith(b"\x89PNG") and body["backtest_id"] in str(png)
    assert body["equity_png_url"].endswith(f"/artifacts/api_backtests/{body['backtest_id']}/equity.png")

    by_scenario = httpx.post(url, json={"scenario": "calm", "version": "1"}, headers=bearer(operator), timeout=300)
    assert by_scenario.status_code == 200 and by_scenario.json()["start"] == "2026-01-05T00:00:00Z"
    too_long = problem(httpx.post(url, json={"scenario": "latest_quarter"}, headers=bearer(operator), timeout=60), 422)
    assert too_long["check"] == "max_window" and "limited to 31 days" in too_long["detail"]
    assert too_long["field"] == "scenario" and too_long["extra"] == {"days": 90.0, "limit": 31}
    explicit = {"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}
    assert problem(httpx.post(url, json=explicit, headers=bearer(operator), timeout=60), 422)["field"] == "end"
    empty = {"start": "2025-01-01T00:00:00Z", "end": "2025-01-10T00:00:00Z"}
    assert problem(httpx.post(url, json=empty, headers=bearer(operator), timeout=60), 422)["check"] == "bars"
    for body_ in (
        {},
        {"scenario": "calm", "start": "2026-01-06T00:00:00Z"},
        {"start": "2026-01-06T00:00:00Z"},
        {"start": "2026-01-10T00:00:00Z", "end": "2026-01-06T00:00:00Z"},
        {"scenario": "calm", "version": "1; DROP TABLE x"},
        {"scenario": "calm", "colour": "red"},
    ):
        assert problem(httpx.post(url, json=body_, headers=bearer(operator), timeout=60), 422)["check"] == (
            "request_body"
        )
    assert (
        "scenarios: calm"
        in problem(httpx.post(url, json={"scenario": "../../etc"}, headers=bearer(operator), timeout=60), 404)["detail"]
    )
    problem(httpx.post(url, json={"scenario": "calm", "version": "99"}, headers=bearer(operator), timeout=60), 404)
    problem(httpx.post(f"{server.url}/api/v1/ml/nope/backtest", json=window, headers=bearer(operator)), 404)


def test_backtest_needs_an_operator(server: Server, managed: Stack) -> None:
    url = f"{server.url}/api/v1/ml/{DIRECTION}/backtest"
    assert problem(httpx.post(url, json={"scenario": "calm"}), 401)["check"] == "bearer_token"
    for role in ("viewer", "approver", "reviewer"):
        token = tokens.create(managed.settings.serve_tokens_file, actor=f"{role}-1", role=role)[1]
        assert problem(httpx.post(url, json={"scenario": "calm"}, headers=bearer(token)), 403)["check"] == "role"


def test_approve_and_review_follow_the_four_eyes_rules_with_the_tokens_actor(
    server: Server, managed: Stack, cli_env: None
) -> None:
    path = managed.settings.serve_tokens_file
    base = f"{server.url}/api/v1/ml/{DIRECTION}/versions/1"

    def as_(role: str, actor: str) -> dict[str, str]:
        return bearer(tokens.create(path, actor=actor, role=role)[1])

    ok = {"comment": "checked the backtest"}
    assert problem(httpx.post(f"{base}/approve", json=ok), 401)["check"] == "bearer_token"
    assert problem(httpx.post(f"{base}/approve", json=ok, headers=as_("reviewer", "rita")), 403)["check"] == "role"
    assert problem(httpx.post(f"{base}/approve", json=ok, headers=as_("operator", "olga")), 403)["check"] == "role"
    own = problem(httpx.post(f"{base}/approve", json=ok, headers=as_("approver", "Trainer ")), 403)
    assert own["check"] == "four_eyes" and "'trainer' trained this version" in own["detail"]
    # a name in the body changes nothing: the actor is the token's
    sneaky = httpx.post(f"{base}/approve", json={**ok, "approver": "alice"}, headers=as_("approver", "trainer"))
    assert problem(sneaky, 422)["check"] == "request_body"
    production = f"{server.url}/api/v1/ml/{MODEL}/versions/1/approve"
    assert problem(httpx.post(production, json=ok, headers=as_("approver", "alice")), 409)["check"] == "lifecycle"
    problem(
        httpx.post(f"{server.url}/api/v1/ml/{MODEL}/versions/99/approve", json=ok, headers=as_("approver", "a")), 404
    )

    alice = as_("approver", "alice")
    approved = httpx.post(f"{base}/approve", json=ok, headers=alice)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approver"] == "alice" and approved.json()["state"] == "STAGING"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["alice"]
    shown = cli_json("models", "show", DIRECTION, "--version", "1", "--json")
    assert shown["approvals"] == approved.json()["approvals"]

    sign_off = {"decision": "approved", "comment": "report read"}
    assert problem(httpx.post(f"{base}/review", json=sign_off, headers=as_("approver", "rob")), 403)["check"] == "role"
    by_approver = problem(httpx.post(f"{base}/review", json=sign_off, headers=as_("reviewer", "alice")), 403)
    assert by_approver["check"] == "four_eyes" and "approved this version" in by_approver["detail"]
    by_trainer = problem(httpx.post(f"{base}/review", json=sign_off, headers=as_("reviewer", "trainer")), 403)
    assert by_trainer["check"] == "four_eyes"
    carol = as_("reviewer", "carol")
    for malformed in ({"decision": "maybe", "comment": "x"}, {"decision": "approved", "comment": "  "}, {}):
        assert problem(httpx.post(f"{base}/review", json=malformed, headers=carol), 422)["check"] == "request_body"
    decided = httpx.post(f"{base}/review", json=sign_off, headers=carol)
    assert decided.status_code == 200, decided.text
    assert decided.json() == {
        "model": DIRECTION,
        "version": "1",
        "status": "APPROVED",
        "reviewer": "carol",
        "report_warning": None,
    }
    again = problem(httpx.post(f"{base}/review", json=sign_off, headers=carol), 409)
    assert again["check"] == "lifecycle" and "nothing pending review (APPROVED)" in again["detail"]
    shown = cli_json("models", "show", DIRECTION, "--version", "1", "--json")
    assert shown["compliance_review"]["reviewer"] == "carol" and shown["compliance_review"]["status"] == "APPROVED"
    with managed.lifecycle() as lifecycle:
        page = managed.tracking().read_text_artifact(lifecycle.run_id(DIRECTION, "1"), compliance.REPORT_HTML)
    assert "<b>APPROVED</b> by carol" in page and page.endswith("<pre>body</pre>")
