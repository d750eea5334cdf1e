"""Deployments through the API, and the traffic a production deployment shares with the challenger, against a real
uvicorn process on 127.0.0.1 and the real stores (production v1, challenger v2):

- the deployments routes: create runs the checklist (201 ready; 409 listing the failed items, the blocked
  deployment recorded), list, show, 404, tokens and roles;
- a traffic change needs an operator (401/403), refuses a share outside 0..1 or a non-boolean shadow (422 naming
  the field), is one verified audit row (actor, old and new, reason) that moves no state or alias, and the
  running server follows it without a restart;
- canary: share 0 sends every symbol to the champion; share 0.3 sends the symbols whose stable hash falls under it
  (within a binomial tolerance of 30%) to the challenger, the same ones on every request and after a restart;
- shadow: every answered request's champion items are scored by the challenger too, logged with role ``shadow``
  and never in the response; ``champion_challenger.served_pairs`` reads them back from the warehouse.
"""

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.governance import tokens
from mlops_pipelines.lib.governance.deployments import to_canary
from mlops_pipelines.lib.monitoring import served_predictions
from mlops_pipelines.lib.monitoring.champion_challenger import served_pairs
from mlops_pipelines_tests.conftest import wait_until
from mlops_pipelines_tests.test_serving.conftest import MODEL, SYMBOLS, Server, Stack, served_json, serving

pytestmark = pytest.mark.slow  # one server process for the module: about half a minute to train, load, warm up
DEPLOYMENTS = "/api/v1/ml/lifecycle/deployments"


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Server]:
    with serving(stack) as running:
        yield running


@pytest.fixture(scope="module")
def operator(stack: Stack) -> dict[str, str]:
    return bearer(tokens.create(stack.settings.serve_tokens_file, actor="olga", role="operator")[1])


@pytest.fixture
def deployment(server: Server, operator: dict[str, str]) -> str:
    """The active production deployment (of v1, the production version), created (ready) when there is none."""
    listed = httpx.get(f"{server.url}{DEPLOYMENTS}", params={"model": MODEL}, timeout=60).json()["deployments"]
    active = [d["deployment_id"] for d in listed if d["active"]]
    return active[0] if active else deploy(server, operator)


def deploy(server: Server, operator: dict[str, str]) -> str:
    """v1 (production) deployed to production: ready."""
    created = httpx.post(
        f"{server.url}{DEPLOYMENTS}", json={"model": MODEL, "version": "1"}, headers=operator, timeout=60
    )
    assert created.status_code == 201, created.text
    return created.json()["deployment_id"]


def following(server: Server) -> tuple[str | None, bool, float]:
    traffic = httpx.get(f"{server.url}/api/v1/models/{MODEL}/status", timeout=60).json()["traffic"]
    return traffic["deployment_id"], traffic["shadow"], traffic["canary_share"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def set_traffic(server: Server, deployment: str, headers: dict[str, str], **body: object) -> dict:
    """Change the traffic through the API and wait until the server follows it (status shows it)."""
    answer = httpx.put(f"{server.url}{DEPLOYMENTS}/{deployment}/traffic", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    new = answer.json()["new"]

    def followed() -> bool:
        return following(server) == (deployment, new["shadow"], new["canary_share"])

    wait_until("the server follows the traffic change", followed, watch=[server.process], log=server.log)
    return answer.json()


def predict_all(server: Server) -> list[dict]:
    """Every symbol's prediction from the production alias (two calls: the per-call limit is 100)."""
    found = []
    for chunk in (SYMBOLS[:60], SYMBOLS[60:]):
        answer = httpx.post(f"{server.url}/api/v1/models/{MODEL}/predict", json={"symbols": chunk}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "1"
        found += answer.json()["predictions"]
    return found


def expected(stack: Stack, version: str, symbols: list[str]) -> np.ndarray:
    vectors = stack.vectors.set_index("entity_key").loc[symbols, stack.features]
    return stack.boosters[(MODEL, version)].predict(vectors.to_numpy(dtype=float))


def test_deployments_routes(server: Server, stack: Stack, operator: dict[str, str], deployment: str) -> None:
    url = f"{server.url}{DEPLOYMENTS}"
    body = {"model": MODEL, "version": "1"}
    assert problem(httpx.post(url, json=body), 401)["check"] == "bearer_token"
    viewer = bearer(tokens.create(stack.settings.serve_tokens_file, actor="vic", role="viewer")[1])
    assert problem(httpx.post(url, json=body, headers=viewer), 403)["check"] == "role"
    assert problem(httpx.post(url, json={**body, "version": "x"}, headers=operator), 422)["field"] == "version"
    assert problem(httpx.post(url, json={**body, "environment": "moon"}, headers=operator), 422)["field"] == (
        "environment"
    )
    assert (
        "no version '99'" in problem(httpx.post(url, json={**body, "version": "99"}, headers=operator), 404)["detail"]
    )

    shown = httpx.get(f"{url}/{deployment}").json()
    assert (shown["model"], shown["version"], shown["environment"], shown["status"]) == (
        MODEL,
        "1",
        "production",
        "ready",
    )
    assert shown["created_by"] == "olga" and shown["active"] is True  # the token's actor
    assert {item["name"] for item in shown["checklist"]} >= {"lifecycle_state", "approvals_present", "policy_passed"}
    assert all(item["passed"] for item in shown["checklist"])

    # v2 is STAGING: the checklist fails; the deployment is recorded as blocked and the answer lists why
    blocked = problem(httpx.post(url, json={"model": MODEL, "version": "2"}, headers=operator), 409)
    assert blocked["check"] == "deployment_checklist"
    failed = {item["name"]: item["detail"] for item in blocked["extra"]["failed"]}
    assert failed["lifecycle_state"] == "v2 is STAGING; production needs PRODUCTION"
    assert "lifecycle_state: v2 is STAGING" in blocked["detail"]
    recorded = httpx.get(f"{url}/{blocked['extra']['deployment_id']}").json()
    assert recorded["status"] == "blocked" and recorded["active"] is False

    listed = httpx.get(url, params={"model": MODEL}).json()["deployments"]
    assert {d["deployment_id"] for d in listed} >= {deployment, blocked["extra"]["deployment_id"]}
    assert [d["created_at"] for d in listed] == sorted((d["created_at"] for d in listed), reverse=True)
    assert "no deployment 'nope'" in problem(httpx.get(f"{url}/nope"), 404)["detail"]


def test_traffic_needs_an_operator_refuses_bad_values_and_is_audited(
    server: Server, stack: Stack, operator: dict[str, str], deployment: str
) -> None:
    url = f"{server.url}{DEPLOYMENTS}/{deployment}/traffic"
    assert problem(httpx.put(url, json={"canary_share": 0.1}), 401)["check"] == "bearer_token"
    viewer = bearer(tokens.create(stack.settings.serve_tokens_file, actor="vera", role="viewer")[1])
    assert problem(httpx.put(url, json={"canary_share": 0.1}, headers=viewer), 403)["check"] == "role"
    for hostile, field in [
        ({"canary_share": 1.5}, "canary_share"),
        ({"canary_share": -0.1}, "canary_share"),
        ({"canary_share": "0.1"}, "canary_share"),
        ({"canary_share": True}, "canary_share"),
        ({"shadow": "yes"}, "shadow"),
        ({"shadow": 1}, "shadow"),
        ({"canary_share": 0.1, "colour": "red"}, "colour"),
    ]:
        assert problem(httpx.put(url, json=hostile, headers=operator), 422)["field"] == field, hostile
    assert problem(httpx.put(url, content=b'{"canary_share": NaN}', headers=operator), 422)["check"] == "request_body"
    assert "'shadow', 'canary_share'" in problem(httpx.put(url, json={}, headers=operator), 422)["detail"]
    assert problem(httpx.put(f"{server.url}{DEPLOYMENTS}/nope/traffic", json={"shadow": True}, headers=operator), 404)
    with stack.lifecycle() as lifecycle:
        before = lifecycle.record(MODEL)
        rows_before = len(lifecycle.history(MODEL))

    answer = set_traffic(server, deployment, operator, canary_share=0.25, shadow=False, reason="try a quarter")
    previous = answer["old"]
    assert answer["new"] == {"shadow": False, "canary_share": 0.25} and answer["actor"] == "olga"
    with stack.lifecycle() as lifecycle:
        rows = lifecycle.history(MODEL)
        after, problems = lifecycle.verify(MODEL)
    (row,) = rows[rows_before:]  # one row, verified, naming who, what before, what after, and why
    assert (row["action"], row["actor"], row["version"], row["verified"]) == ("traffic", "olga", "1", True)
    assert row["details"] == {"deployment_id": deployment, "old": previous, "new": answer["new"]}
    assert row["reason"].startswith("try a quarter (API token ")
    assert not problems and after.traffic[deployment] == answer["new"]
    # no state, alias, approval or review moved
    assert after.aliases == before.aliases
    assert {v: r.state for v, r in after.versions.items()} == {v: r.state for v, r in before.versions.items()}
    assert after.versions["2"].approvals == before.versions["2"].approvals
    shown = httpx.get(f"{server.url}{DEPLOYMENTS}/{deployment}").json()
    assert shown["traffic"] == answer["new"]
    # the CLI's function refuses the same values (one function for both)
    with stack.lifecycle() as lifecycle, pytest.raises(ValueError, match="canary_share must be a number from 0 to 1"):
        from mlops_pipelines.lib.governance.deployments import set_traffic as set_in_lib

        set_in_lib(lifecycle, deployment, canary_share=math.nan, actor="olga", reason="x")


def test_canary_is_sticky_per_symbol_and_survives_a_restart(
    server: Server, stack: Stack, operator: dict[str, str], deployment: str
) -> None:
    set_traffic(server, deployment, operator, canary_share=0.0, shadow=False)
    none = predict_all(server)
    assert {(p["version"], p["role"]) for p in none} == {("1", "serve")}
    np.testing.assert_allclose([p["prediction"] for p in none], expected(stack, "1", SYMBOLS), rtol=1e-12)

    set_traffic(server, deployment, operator, canary_share=0.3)
    first = predict_all(server)
    canary = [p["symbol"] for p in first if p["role"] == "canary"]
    # which symbols: those whose stable hash falls under the share; how many: 30% within 4 binomial sd
    assert canary == [s for s in SYMBOLS if to_canary(MODEL, s, 0.3)]
    n, share = len(SYMBOLS), 0.3
    assert abs(len(canary) - n * share) <= 4 * math.sqrt(n * share * (1 - share)), len(canary)
    assert {(p["version"], p["role"]) for p in first} == {("1", "serve"), ("2", "canary")}
    by_symbol = {p["symbol"]: p["prediction"] for p in first}
    np.testing.assert_allclose([by_symbol[s] for s in canary], expected(stack, "2", canary), rtol=1e-12)
    champion = [s for s in SYMBOLS if s not in canary]
    np.testing.assert_allclose([by_symbol[s] for s in champion], expected(stack, "1", champion), rtol=1e-12)

    assert predict_all(server) == first  # sticky across requests
    with serving(stack, "restarted") as restarted:  # ...and across processes (no per-process hash seed)
        assert predict_all(restarted) == first

    logged = [e for e in served_json(stack.settings.prediction_log_dir) if e["role"] == "canary"]
    assert logged and {(e["version"], e["alias"]) for e in logged} == {("2", "challenger")}
    assert {e["symbol"] for e in logged} == set(canary)
    set_traffic(server, deployment, operator, canary_share=0.0)
    assert {p["role"] for p in predict_all(server)} == {"serve"}


def test_shadow_scores_every_answered_request_off_the_response(
    server: Server, stack: Stack, operator: dict[str, str], deployment: str
) -> None:
    def requests(n: int) -> tuple[list[dict], float]:
        """``n`` predictions of 5 symbols each, and their median latency (ms) as the client sees it."""
        found, took = [], []
        with httpx.Client(timeout=60) as http:
            for i in range(n):
                begun = time.perf_counter()
                answer = http.post(f"{server.url}/api/v1/models/{MODEL}/predict", json={"symbols": SYMBOLS[i : i + 5]})
                took.append((time.perf_counter() - begun) * 1000)
                assert answer.status_code == 200, answer.text
                found.append(answer.json())
        return found, float(np.median(took))

    set_traffic(server, deployment, operator, canary_share=0.0, shadow=False)
    _, without = requests(20)
    set_traffic(server, deployment, operator, shadow=True)
    started = datetime.now(UTC)
    answers, with_shadow = requests(20)
    print(f"\nmedian predict latency (5 symbols): shadow off {without:.2f} ms, shadow on {with_shadow:.2f} ms")
    for answer in answers:  # the response is the champion's alone
        assert {(p["version"], p["role"]) for p in answer["predictions"]} == {("1", "serve")}

    def shadowed() -> dict | None:
        jobs = httpx.get(f"{server.url}/api/v1/models/{MODEL}/status").json()["traffic"]["shadow_jobs"]
        return jobs if jobs["scored"] + jobs["failed"] + jobs["dropped"] == jobs["submitted"] else None

    jobs = wait_until("the shadow queue drains", shadowed, watch=[server.process], log=server.log)
    assert jobs["failed"] == 0 and jobs["dropped"] == 0, jobs
    logged = {(e["request_id"], e["item"]): e for e in served_json(stack.settings.prediction_log_dir)}
    for answer in answers:
        asked = [p["symbol"] for p in answer["predictions"]]
        shadow = [logged[(answer["request_id"] + ":shadow", i)] for i in range(len(asked))]
        assert {(e["role"], e["version"], e["alias"]) for e in shadow} == {("shadow", "2", "challenger")}
        assert [e["symbol"] for e in shadow] == asked
        np.testing.assert_allclose([e["prediction"] for e in shadow], expected(stack, "2", asked), rtol=1e-12)

    # the warehouse's copy pairs each champion answer with the challenger's shadow score of the same item
    with warehouse.connect(stack.settings.warehouse_path) as conn:
        served_predictions.ingest(conn, stack.settings.prediction_log_dir)
        pairs = served_pairs(conn, MODEL, "1", "2", started - timedelta(seconds=1), datetime.now(UTC))
    ours = pairs[pairs["request_id"].isin({a["request_id"] for a in answers})]
    assert len(ours) == 100 and set(ours["version_challenger"]) == {"2"}
    set_traffic(server, deployment, operator, shadow=False)


def test_a_new_production_deployment_is_followed_with_its_own_traffic(
    server: Server, operator: dict[str, str], deployment: str
) -> None:
    """A newer ready production deployment of the production version takes over, traffic off until set: the
    server follows it without a restart (it is marked on the registered model), never keeping the old one's."""
    set_traffic(server, deployment, operator, canary_share=0.5, shadow=True)
    assert {p["role"] for p in predict_all(server)} == {"serve", "canary"}
    newer = deploy(server, operator)
    wait_until(
        "the server follows the new deployment",
        lambda: following(server) == (newer, False, 0.0),
        watch=[server.process],
        log=server.log,
    )
    assert {p["role"] for p in predict_all(server)} == {"serve"}
    url = f"{server.url}{DEPLOYMENTS}"
    assert httpx.get(f"{url}/{deployment}").json()["active"] is False
    assert httpx.get(f"{url}/{newer}").json()["active"] is True
