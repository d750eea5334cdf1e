"""The serving API's contract, route by route, against a real uvicorn process on 127.0.0.1 and the real stores:
200, 404, 409, 422, 401/403 and 503, each with its problem document; tokens (missing, wrong, revoked, wrong
role); the prediction log holding every answered request."""

import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.features.online_store import write_snapshot
from mlops_pipelines.lib.governance import tokens
from mlops_pipelines_tests.test_serving.conftest import (
    MAX_ITEMS,
    MODEL,
    STALE_GRAPH,
    STALE_SYMBOL,
    SYMBOLS,
    Server,
    Stack,
    served_json,
    serving,
)

pytestmark = pytest.mark.slow  # one server process for the module: about half a minute to train, load, warm up


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Server]:
    with serving(stack) as running:
        yield running


def post(server: Server, model: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/models/{model}/predict", json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def test_health_and_readiness(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["loaded"][MODEL] == ["1", "2"]
    assert "/api/v1/models/{model}/predict" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_predict_symbols_and_rows_agree_with_the_registered_model(server: Server, stack: Stack) -> None:
    symbols = ["SYM01", "SYM03", "SYM07"]
    body = post(server, MODEL, {"symbols": symbols}).json()
    assert (body["model"], body["version"], body["alias"]) == (MODEL, "1", "production")
    assert len(body["request_id"]) == 32 and len(body["feature_graph_hash"]) == 64
    vectors = stack.vectors.set_index("entity_key").loc[symbols, stack.features]
    expected = stack.boosters[(MODEL, "1")].predict(vectors.to_numpy(dtype=float))
    assert [p["symbol"] for p in body["predictions"]] == symbols
    np.testing.assert_allclose([p["prediction"] for p in body["predictions"]], expected, rtol=1e-12)
    assert all(p["features_as_of"] == "2026-02-14T11:27:00.000000Z" for p in body["predictions"])

    rows = [{f: (None if np.isnan(v) else float(v)) for f, v in row.items()} for _, row in vectors.iterrows()]
    by_rows = post(server, MODEL, {"rows": rows}).json()
    assert [p["prediction"] for p in by_rows["predictions"]] == [p["prediction"] for p in body["predictions"]]
    assert [p["row"] for p in by_rows["predictions"]] == [0, 1, 2]

    staged = post(server, MODEL, {"symbols": symbols, "alias": "staging"}).json()
    by_number = post(server, MODEL, {"symbols": symbols, "version": "2"}).json()
    assert (staged["version"], by_number["version"], by_number["alias"]) == ("2", "2", None)
    assert staged["predictions"] == by_number["predictions"]

    logged = {(e["request_id"], e["item"]): e for e in served_json(stack.settings.prediction_log_dir)}
    for answer in (body, by_rows, staged, by_number):
        for i, p in enumerate(answer["predictions"]):
            entry = logged[(answer["request_id"], i)]
            assert (entry["version"], entry["symbol"], entry["prediction"]) == (
                answer["version"],
                p["symbol"],
                p["prediction"],
            )


def test_not_found(server: Server) -> None:
    assert "served models: toy_direction" in problem(post(server, "nope", {"symbols": ["SYM01"]}), 404)["detail"]
    assert "versions: 1, 2" in problem(post(server, MODEL, {"symbols": ["SYM01"], "version": "99"}), 404)["detail"]
    assert (
        "unknown alias 'gold'" in problem(post(server, MODEL, {"symbols": ["SYM01"], "alias": "gold"}), 404)["detail"]
    )
    missing = problem(post(server, MODEL, {"symbols": ["SYM01", "NOSUCH"]}), 404)
    assert missing["field"] == "symbols[1]" and "'NOSUCH'" in missing["detail"]
    problem(httpx.get(f"{server.url}/api/v1/models/nope/status"), 404)
    problem(httpx.get(f"{server.url}/api/v1/models/nope/versions"), 404)


@pytest.mark.parametrize(
    ("body", "field", "check"),
    [
        ({"symbols": ["SYM01"], "rows": []}, None, "request_body"),
        ({"symbols": "SYM01"}, "symbols", "request_body"),
        ({"symbols": ["SYM01"], "colour": "red"}, "colour", "request_body"),
        ({"symbols": [f"SYM{i:02d}" for i in range(MAX_ITEMS + 1)]}, "symbols", "max_items"),
        ({"symbols": []}, None, "min_items"),
        ({"rows": [{"ret_1b": 0.1}]}, "FIRST_MISSING", "missing_feature"),
        ({"rows": "ROW_WITH_UNKNOWN"}, "rows[0].not_a_feature", "unknown_feature"),
        ({"rows": "ROW_WITH_TEXT"}, "rows[0].ret_1b", "feature_type"),
        ({"rows": "ROW_WITH_BOOL"}, "rows[0].ret_1b", "feature_type"),
    ],
)
def test_unprocessable(server: Server, stack: Stack, body: dict, field: str | None, check: str) -> None:
    full = dict.fromkeys(stack.features, 0.5)
    hostile = {
        "ROW_WITH_UNKNOWN": [{**full, "not_a_feature": 1.0}],
        "ROW_WITH_TEXT": [{**full, "ret_1b": "0.5"}],
        "ROW_WITH_BOOL": [{**full, "ret_1b": True}],
    }
    if isinstance(body.get("rows"), str):
        body = {"rows": hostile[body["rows"]]}
    if field == "FIRST_MISSING":
        field = f"rows[0].{next(f for f in stack.features if f != 'ret_1b')}"
    found = problem(post(server, MODEL, body), 422)
    assert found["check"] == check
    assert found.get("field") == field or (field is None and check == "request_body")
    if check == "max_items":
        assert f"the limit is {MAX_ITEMS}" in found["detail"]


def test_malformed_json(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/models/{MODEL}/predict",
        content=b'{"symbols": [',
        headers={"content-type": "application/json"},
    )
    assert problem(response, 422)["check"] == "request_body"


def test_feature_graph_mismatch_is_409_naming_the_views(server: Server) -> None:
    found = problem(post(server, STALE_GRAPH, {"symbols": ["SYM01"]}), 409)
    assert found["check"] == "feature_graph_hash"
    assert found["extra"]["trained_hash"] == "0" * 64 and len(found["extra"]["live_hash"]) == 64
    assert found["extra"]["views"] == [{"view": "returns", "trained_version": 2, "live_version": 3}]
    status = httpx.get(f"{server.url}/api/v1/models/{STALE_GRAPH}/status").json()
    assert status["aliases"][0]["graph_matches_catalog"] is False and status["aliases"][0]["loaded"] is False


def test_graph_mismatch_override_needs_an_operator_and_is_audited(server: Server, stack: Stack) -> None:
    path = stack.settings.serve_tokens_file
    body = {"symbols": ["SYM01"], "override_reason": "catalog change is cosmetic"}
    assert problem(post(server, STALE_GRAPH, body), 401)["check"] == "bearer_token"
    viewer = tokens.create(path, actor="vic", role="viewer")[1]
    assert problem(post(server, STALE_GRAPH, body, headers=bearer(viewer)), 403)["check"] == "role"
    info, operator = tokens.create(path, actor="olga", role="operator")
    answered = post(server, STALE_GRAPH, body, headers=bearer(operator))
    assert answered.status_code == 200 and answered.json()["version"] == "1", answered.text
    assert post(server, STALE_GRAPH, body, headers=bearer(operator)).status_code == 200  # loaded once, audited once
    with stack.lifecycle() as lifecycle:
        overrides = [r for r in lifecycle.history(STALE_GRAPH) if r["action"] == "override"]
    assert [(r["actor"], r["version"]) for r in overrides] == [("olga", "1")]
    assert "catalog change is cosmetic" in overrides[0]["reason"] and info.token_id in overrides[0]["reason"]
    # the override served that request only: without one, the version is still refused
    assert problem(post(server, STALE_GRAPH, {"symbols": ["SYM01"]}), 409)["check"] == "feature_graph_hash"


def test_unavailable(server: Server) -> None:
    no_alias = problem(post(server, STALE_GRAPH, {"symbols": ["SYM01"], "alias": "challenger"}), 503)
    assert no_alias["check"] == "alias" and "holds the alias 'challenger'" in no_alias["detail"]
    stale = problem(post(server, MODEL, {"symbols": ["SYM01", STALE_SYMBOL]}), 503)
    assert stale["check"] == "feature_freshness" and stale["field"] == "symbols[1]"
    assert "older than its TTL (3:00:00)" in stale["detail"]


def test_status_and_versions(server: Server) -> None:
    status = httpx.get(f"{server.url}/api/v1/models/{MODEL}/status").json()
    aliases = {a["alias"]: (a["version"], a["state"], a["loaded"]) for a in status["aliases"]}
    assert aliases == {
        "production": ("1", "PRODUCTION", True),
        "staging": ("2", "STAGING", True),
        "challenger": ("2", "STAGING", True),
    }
    versions = httpx.get(f"{server.url}/api/v1/models/{MODEL}/versions").json()["versions"]
    assert [(v["version"], v["state"], v["aliases"]) for v in versions] == [
        ("1", "PRODUCTION", ["production"]),
        ("2", "STAGING", ["challenger", "staging"]),
    ]
    assert versions[0]["metrics"] == {"sharpe": 1.0} and versions[0]["trained_by"] == "trainer"
    assert all(len(v["artifact_sha256"]) == 64 for v in versions)


def test_token_misuse_on_promote(server: Server, stack: Stack) -> None:
    path = stack.settings.serve_tokens_file
    url = f"{server.url}/api/v1/ml/{MODEL}/promote"
    body = {"version": "2", "to": "production"}
    viewer = tokens.create(path, actor="vera", role="viewer")[1]
    revoked_info, revoked = tokens.create(path, actor="ops", role="operator")
    tokens.revoke(path, revoked_info.token_id)

    assert problem(httpx.post(url, json=body), 401)["check"] == "bearer_token"
    assert problem(httpx.post(url, json=body, headers={"Authorization": "Basic x"}), 401)["check"] == "bearer_token"
    wrong = revoked[:-4] + ("AAAA" if not revoked.endswith("AAAA") else "BBBB")
    assert "is not valid" in problem(httpx.post(url, json=body, headers=bearer(wrong)), 401)["detail"]
    assert "not valid" in problem(httpx.post(url, json=body, headers=bearer("mlops_ffffffffffff_x")), 401)["detail"]
    assert "revoked" in problem(httpx.post(url, json=body, headers=bearer(revoked)), 401)["detail"]
    assert problem(httpx.post(url, json=body, headers=bearer(viewer)), 403)["check"] == "role"
    # four-eyes uses the token's actor: 'reviewer' approved v2, so it cannot also request its promotion
    approver_as_operator = tokens.create(path, actor="reviewer", role="operator")[1]
    refused = problem(httpx.post(url, json=body, headers=bearer(approver_as_operator)), 403)
    assert refused["check"] == "four_eyes" and "'reviewer'" in refused["detail"]
    assert httpx.get(f"{server.url}/api/v1/models/{MODEL}/status").json()["aliases"][1]["version"] == "1"
    with stack.lifecycle() as lifecycle:
        assert lifecycle.champion(MODEL) == "1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_online_store_refresh_during_requests_never_mixes_snapshots(server: Server, stack: Stack) -> None:
    """features/online_store replaces the snapshot while predictions are read: every response is one snapshot's
    (all its symbols' feature times and predictions from the same one), never a torn mix."""
    asked = SYMBOLS[:20]
    original = stack.vectors
    other = original.copy()
    other[stack.features] = original[stack.features].to_numpy()[::-1]  # other values...
    for column in [c for c in original.columns if c.endswith("__event_ts")]:
        other[column] = original[column] + pd.Timedelta(minutes=5)  # ...and other feature times
    booster = stack.boosters[(MODEL, "1")]
    expected = {  # the oldest view time (volatility's) of a snapshot -> its predictions
        rows["volatility__event_ts"].min().strftime("%Y-%m-%dT%H:%M:%S.%fZ"): booster.predict(
            rows[stack.features].to_numpy(dtype=float)
        )
        for rows in (frame.set_index("entity_key").loc[asked] for frame in (original, other))
    }
    stop, answers = threading.Event(), []

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                answers.append(http.post(f"{server.url}/api/v1/models/{MODEL}/predict", json={"symbols": asked}))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(12):
            write_snapshot(
                stack.settings.online_store_path, [other, original][i % 2], key="entity_key", snapshot_id=str(i)
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert answers and all(a.status_code == 200 for a in answers)
    seen = set()
    for answer in answers:
        predictions = answer.json()["predictions"]
        times = {p["features_as_of"] for p in predictions}
        assert len(times) == 1, times  # one snapshot's times for every symbol
        (as_of,) = times
        np.testing.assert_allclose([p["prediction"] for p in predictions], expected[as_of], rtol=1e-12)
        seen.add(as_of)
    print(f"\n{len(answers)} responses across 12 refreshes, snapshots seen: {len(seen)}")
