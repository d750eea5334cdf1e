"""Alert sinks against a real HTTP server on loopback, the JSON-lines file, and deduplication."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_pipelines.lib.alerts import Alert, Alerter, JsonLinesSink, WebhookSink, build_sinks


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200 if self.path != "/broken" else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", received
    finally:
        httpd.shutdown()
        httpd.server_close()


ALERT = Alert(
    kind="severe_drift",
    subject="direction_classifier",
    episode="2026-02-21T00:00:00+00:00",
    summary="feature drift SEVERE",
    details={"features": ["ret_1h"]},
)


def test_each_alert_reaches_every_sink_once(server: tuple[str, list[dict]], tmp_path: Path) -> None:
    url, received = server
    jsonl = tmp_path / "alerts.jsonl"
    sinks = build_sinks(
        ["log", "jsonl", "webhook", "slack"], jsonl_path=jsonl, webhook_url=f"{url}/hook", slack_url=f"{url}/slack"
    )
    alerter = Alerter(sinks, tmp_path / "sent.json")
    assert alerter.raise_alert(ALERT)
    assert not alerter.raise_alert(ALERT)  # same episode: deduplicated
    assert not Alerter(sinks, tmp_path / "sent.json").raise_alert(ALERT)  # ... across restarts too
    next_episode = Alert(**{**ALERT.__dict__, "episode": "2026-02-23T00:00:00+00:00"})
    assert alerter.raise_alert(next_episode)

    hooks = [r["body"] for r in received if r["path"] == "/hook"]
    slack = [r["body"] for r in received if r["path"] == "/slack"]
    assert [h["episode"] for h in hooks] == [ALERT.episode, next_episode.episode]
    assert hooks[0]["details"] == {"features": ["ret_1h"]} and hooks[0]["kind"] == "severe_drift"
    assert len(slack) == 2 and "direction_classifier" in slack[0]["text"] and set(slack[0]) == {"text"}
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["episode"] for line in lines] == [ALERT.episode, next_episode.episode]


def test_a_broken_sink_does_not_stop_the_others(server: tuple[str, list[dict]], tmp_path: Path) -> None:
    url, _ = server
    jsonl = tmp_path / "alerts.jsonl"
    alerter = Alerter([WebhookSink(f"{url}/broken"), JsonLinesSink(jsonl)], tmp_path / "sent.json")
    assert alerter.raise_alert(ALERT)
    assert len(jsonl.read_text().splitlines()) == 1


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="'slack' is configured but its URL is not set"):
        build_sinks(["slack"], jsonl_path=Path("x"), webhook_url=None, slack_url=None)
    with pytest.raises(ValueError, match="unknown alert sink 'pager'"):
        build_sinks(["pager"], jsonl_path=Path("x"), webhook_url=None, slack_url=None)
