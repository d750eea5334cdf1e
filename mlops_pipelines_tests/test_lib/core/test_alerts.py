"""Alert sinks against a real HTTP server on loopback, the JSON-lines file, and deduplication."""

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_pipelines.lib.core.alerts import Alert, Alerter, JsonLinesSink, WebhookSink, build_sinks


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
    details={"features": ["ret_1b"]},
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
    assert hooks[0]["details"] == {"features": ["ret_1b"]} and hooks[0]["kind"] == "severe_drift"
    assert len(slack) == 2 and "direction_classifier" in slack[0]["text"] and set(slack[0]) == {"text"}
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["episode"] for line in lines] == [ALERT.episode, next_episode.episode]


def test_a_broken_sink_does_not_stop_the_others(server: tuple[str, list[dict]], tmp_path: Path) -> None:
    url, _ = server
    jsonl = tmp_path / "alerts.jsonl"
    alerter = Alerter([WebhookSink(f"{url}/broken"), JsonLinesSink(jsonl)], tmp_path / "sent.json", backoff_s=0.01)
    assert alerter.raise_alert(ALERT)
    alert, notice = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert alert["kind"] == "severe_drift"
    assert notice["kind"] == "alert_undelivered" and notice["subject"] == "webhook"  # the failure to alert, too


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="'slack' is configured but its URL is not set"):
        build_sinks(["slack"], jsonl_path=Path("x"), webhook_url=None, slack_url=None)
    with pytest.raises(ValueError, match="unknown alert sink 'pager'"):
        build_sinks(["pager"], jsonl_path=Path("x"), webhook_url=None, slack_url=None)


# ---- delivery per sink: retries, a sink that is down, concurrent writers ---------------------------------------
class Endpoint:
    """A real HTTP server on loopback that answers 500 to its first ``fail_first`` POSTs, then 200; records
    every successful body. ``Endpoint.down()`` is a port where nothing listens (connection refused) until
    ``start`` is called on it."""

    def __init__(self, port: int = 0, *, fail_first: int = 0, hang_s: float = 0.0) -> None:
        self.port, self.fail_first, self.hang_s = port, fail_first, hang_s
        self.requests = 0
        self.delivered: list[dict] = []
        self.httpd: ThreadingHTTPServer | None = None

    @classmethod
    def down(cls) -> "Endpoint":
        with socket.socket() as probe:  # a free port; nothing listens on it once the probe is closed
            probe.bind(("127.0.0.1", 0))
            return cls(probe.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/secret-token"

    def start(self) -> "Endpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(endpoint.hang_s)
                endpoint.requests += 1
                ok = endpoint.requests > endpoint.fail_first
                if ok:
                    endpoint.delivered.append(body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def endpoints() -> Iterator[list[Endpoint]]:
    """Endpoints a test appends; all stopped at the end."""
    started: list[Endpoint] = []
    yield started
    for endpoint in started:
        endpoint.stop()


def jsonl_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_sink_failing_a_few_times_gets_the_alert_once_within_the_call(
    endpoints: list[Endpoint], tmp_path: Path
) -> None:
    flaky = Endpoint(fail_first=2).start()
    endpoints.append(flaky)
    alerter = Alerter([WebhookSink(flaky.url), JsonLinesSink(tmp_path / "alerts.jsonl")], tmp_path / "sent.json")
    assert alerter.raise_alert(ALERT)
    assert flaky.requests == 3 and [body["episode"] for body in flaky.delivered] == [ALERT.episode]
    assert alerter.pending() == []
    assert [r["kind"] for r in jsonl_records(tmp_path / "alerts.jsonl")] == ["severe_drift"]  # no failure notice
    assert not alerter.raise_alert(ALERT) and flaky.requests == 3  # delivered: never sent again


def test_an_alert_reaches_a_sink_that_was_down_exactly_once_when_it_is_back(
    endpoints: list[Endpoint], tmp_path: Path
) -> None:
    webhook, slack = Endpoint.down(), Endpoint().start()
    endpoints += [webhook, slack]
    jsonl = tmp_path / "alerts.jsonl"

    def alerter() -> Alerter:  # a new one per use, as the resource builds it per run step or sensor tick
        sinks = build_sinks(
            ["log", "jsonl", "webhook", "slack"], jsonl_path=jsonl, webhook_url=webhook.url, slack_url=slack.url
        )
        return Alerter(sinks, tmp_path / "sent.json", backoff_s=0.01)

    assert alerter().raise_alert(ALERT)
    assert len(slack.delivered) == 1 and alerter().pending() == [(ALERT.key, "webhook")]
    records = jsonl_records(jsonl)
    assert [(r["kind"], r["subject"]) for r in records] == [
        ("severe_drift", "direction_classifier"),
        ("alert_undelivered", "webhook"),  # the failure to alert is an alert of its own
    ]
    assert records[1]["episode"] == ALERT.key and "Connection refused" in records[1]["details"]["error"]

    # raised again while the webhook is still down: the sinks that have it get nothing, the failure is not re-told
    assert not alerter().raise_alert(ALERT)
    second = Alert(**{**ALERT.__dict__, "subject": "volatility_forecaster"})
    assert alerter().raise_alert(second)
    assert len(slack.delivered) == 2 and len(jsonl_records(jsonl)) == 4  # second alert + its notice
    assert alerter().flush() == 2  # both still owed to the webhook

    webhook.start()  # back, on the same URL
    assert alerter().flush() == 0
    assert sorted(body["subject"] for body in webhook.delivered) == ["direction_classifier", "volatility_forecaster"]
    assert webhook.delivered[0]["summary"] == ALERT.summary and webhook.delivered[0]["raised_at"] == ALERT.raised_at
    for _ in range(2):  # nothing owed any more: neither a flush nor a new raise sends anything again
        assert alerter().flush() == 0 and not alerter().raise_alert(ALERT)
    assert len(webhook.delivered) == 2 and len(slack.delivered) == 2
    assert [r["kind"] for r in jsonl_records(jsonl)].count("severe_drift") == 2


def test_a_new_alert_retries_what_is_pending(endpoints: list[Endpoint], tmp_path: Path) -> None:
    """No sensor needed: the next alert raised anywhere retries the earlier alert's pending deliveries first."""
    webhook = Endpoint.down()
    endpoints.append(webhook)
    alerter = Alerter([WebhookSink(webhook.url)], tmp_path / "sent.json", backoff_s=0.01)
    alerter.raise_alert(ALERT)
    webhook.start()
    later = Alert(**{**ALERT.__dict__, "episode": "2026-02-22T00:00:00+00:00"})
    Alerter([WebhookSink(webhook.url)], tmp_path / "sent.json").raise_alert(later)
    assert [body["episode"] for body in webhook.delivered] == [later.episode, ALERT.episode]


def test_a_hanging_sink_costs_one_bounded_wait_per_alerter(endpoints: list[Endpoint], tmp_path: Path) -> None:
    """A sensor raising several alerts must finish well inside its 60 s evaluation timeout (Dagster's default)."""
    hanging = Endpoint(hang_s=1.0).start()
    endpoints.append(hanging)
    jsonl = tmp_path / "alerts.jsonl"
    alerter = Alerter(
        [WebhookSink(hanging.url, timeout_s=0.3), JsonLinesSink(jsonl)], tmp_path / "sent.json", backoff_s=0.05
    )
    start = time.perf_counter()
    for day in range(1, 6):
        alerter.raise_alert(Alert(**{**ALERT.__dict__, "episode": f"2026-02-0{day}"}))
    assert time.perf_counter() - start < 3 * 0.3 + 0.05 * 3 + 1.0  # one sink's attempts, then skipped as down
    assert len(alerter.pending()) == 5
    assert [r["kind"] for r in jsonl_records(jsonl)].count("alert_undelivered") == 5  # each one is told


def test_history_is_not_sent_to_a_sink_added_later(endpoints: list[Endpoint], tmp_path: Path) -> None:
    webhook = Endpoint().start()
    endpoints.append(webhook)
    state = tmp_path / "sent.json"
    state.write_text(json.dumps(["run_failed:ingestion_job:old-run"]))  # the state format of earlier versions
    Alerter([JsonLinesSink(tmp_path / "a.jsonl")], state).raise_alert(ALERT)
    with_webhook = Alerter([JsonLinesSink(tmp_path / "a.jsonl"), WebhookSink(webhook.url)], state)
    assert with_webhook.flush() == 0 and with_webhook.pending() == []
    assert not with_webhook.raise_alert(Alert("run_failed", "ingestion_job", "old-run", "failed"))
    assert webhook.requests == 0


def test_a_sink_taken_out_of_the_configuration_keeps_what_it_is_owed(endpoints: list[Endpoint], tmp_path: Path) -> None:
    webhook = Endpoint.down()
    endpoints.append(webhook)
    state, jsonl = tmp_path / "sent.json", JsonLinesSink(tmp_path / "a.jsonl")
    Alerter([jsonl, WebhookSink(webhook.url)], state, backoff_s=0.01).raise_alert(ALERT)
    without = Alerter([jsonl], state)  # webhook removed while it was down
    assert without.flush() == 0 and not without.raise_alert(ALERT)
    webhook.start()
    assert Alerter([jsonl, WebhookSink(webhook.url)], state).flush() == 0  # configured again: delivered
    assert [body["episode"] for body in webhook.delivered] == [ALERT.episode]
    assert len([r for r in jsonl_records(jsonl.path) if r["kind"] == "severe_drift"]) == 1


def test_webhook_secrets_stay_out_of_errors_state_and_notices(
    endpoints: list[Endpoint], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Endpoint(fail_first=99).start()
    endpoints.append(broken)
    url = broken.url + "?key=hunter2"
    jsonl = tmp_path / "alerts.jsonl"
    alerter = Alerter([WebhookSink(url), JsonLinesSink(jsonl)], tmp_path / "sent.json", backoff_s=0.01)
    caplog.set_level("INFO", logger="mlops_pipelines.alerts")
    alerter.raise_alert(ALERT)
    assert broken.requests == 3
    for text in (caplog.text, jsonl.read_text(), (tmp_path / "sent.json").read_text(), repr(alerter)):
        assert "secret-token" not in text and "hunter2" not in text
        assert f"127.0.0.1:{broken.port}" in text or text == repr(alerter)


# Two processes raise the same alerts at once, in the same order (the worst case for a read-send-write race).
RAISE_MANY = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mlops_pipelines.lib.core.alerts import Alert, Alerter, JsonLinesSink, WebhookSink
    directory, url, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    alerter = Alerter([WebhookSink(url), JsonLinesSink(directory / "alerts.jsonl")], directory / "sent.json")
    while not go.exists():
        time.sleep(0.001)
    for i in range(40):
        alerter.raise_alert(Alert("run_failed", "job", f"run-{i}", "failed"))
""")


def test_two_processes_raising_the_same_alerts_deliver_each_once(endpoints: list[Endpoint], tmp_path: Path) -> None:
    webhook = Endpoint().start()
    endpoints.append(webhook)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen([sys.executable, "-c", RAISE_MANY, str(tmp_path), webhook.url, str(go)]) for _ in range(2)
    ]
    time.sleep(1.0)  # both imported and waiting
    go.touch()
    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    episodes = sorted(body["episode"] for body in webhook.delivered)
    assert episodes == sorted(f"run-{i}" for i in range(40))  # none lost, none twice
    assert len(jsonl_records(tmp_path / "alerts.jsonl")) == 40
    alerter = Alerter([WebhookSink(webhook.url)], tmp_path / "sent.json")
    assert alerter.pending() == [] and not alerter.raise_alert(Alert("run_failed", "job", "run-7", "failed"))
    assert len(webhook.delivered) == 40
