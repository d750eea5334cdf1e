"""Alerts: one event, several sinks (structured log, JSON-lines file, generic webhook, Slack incoming webhook),
deduplicated per (kind, subject, episode) so that one drift episode or one failed run alerts once.

Delivery is recorded per sink. A sink that fails is tried ``attempts`` times with doubling backoff inside the
call; if it still fails, the alert stays *pending* for that sink (and only that sink: the others got it and
never get it again). Pending deliveries are retried by the next ``raise_alert`` (of any alert, the same one
included: the drift assets raise theirs every hour of an episode) and by ``flush``, which the
``alert_retries`` sensor calls every few minutes. An alert pends only on the sinks configured when it was first
raised: a sink added later does not receive the history, and one taken out keeps what it is owed until it is
configured again. Delivery is at least once: a process killed between a sink's answer and the state file's
update sends that alert to that sink again on the next retry.

The failure to alert is itself reported, once per (alert, sink): an ``alert_undelivered`` record on the log
(always) and in the JSON-lines file (when that sink is configured and is not the one failing).

Time is bounded, so a sensor never hits its evaluation timeout: network attempts stop after ``budget_s`` per
call (each one has the sink's own timeout), and a sink that failed all its attempts is not tried again by the
same ``Alerter`` (one per run step or sensor tick). The state file is read, changed and replaced atomically
under an exclusive file lock held for the whole call, so two processes raising alerts at once neither lose each
other's records nor both deliver the same alert.
"""

import fcntl
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from mlops_pipelines.lib.core.errors import ConfigError

logger = logging.getLogger("mlops_pipelines.alerts")

UNDELIVERED = "alert_undelivered"
JSONL_FILE = "alerts.jsonl"  # the jsonl sink's file, in the alerts directory


@dataclass(frozen=True)
class Alert:
    kind: str  # severe_drift | critical_performance | check_failed | run_failed | alert_undelivered
    subject: str  # model, asset, job (or the sink, for alert_undelivered)
    episode: str  # what makes two alerts the same event (a window end, a run id)
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    raised_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}:{self.episode}"


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Delivery is recorded under this name (log, jsonl, webhook, slack)."""
        ...

    def send(self, alert: Alert) -> None: ...


class LogSink:
    name = "log"

    def send(self, alert: Alert) -> None:
        logger.warning("ALERT %s", json.dumps(asdict(alert), sort_keys=True))


@dataclass(frozen=True)
class JsonLinesSink:
    path: Path

    @property
    def name(self) -> str:
        return "jsonl"

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(alert), sort_keys=True) + "\n")


@dataclass(frozen=True)
class WebhookSink:
    """POSTs the alert as JSON; ``slack=True`` sends Slack's incoming-webhook payload instead. The URL is a
    secret (Slack's carries its token): errors name only its scheme, host and port."""

    url: str = field(repr=False)
    slack: bool = False
    timeout_s: float = 5.0

    @property
    def name(self) -> str:
        return "slack" if self.slack else "webhook"

    def send(self, alert: Alert) -> None:
        body = (
            {"text": f":rotating_light: [{alert.kind}] {alert.subject}: {alert.summary}"}
            if self.slack
            else asdict(alert)
        )
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except Exception as error:  # urllib's errors may carry the URL (HTTPError.url): re-raise without it
            raise RuntimeError(f"alert {self.name} at {public_part(self.url)}: {error}") from None
        if status >= 300:
            raise RuntimeError(f"alert {self.name} at {public_part(self.url)} answered HTTP {status}")


def public_part(url: str) -> str:
    """scheme://host:port of a URL, without credentials, path or query (where a webhook keeps its token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def read_jsonl(path: Path) -> list[Alert]:
    """Every alert the ``jsonl`` sink wrote to ``path``, in order (empty when there is no such file). A line that
    is not an alert is an error naming the file and line: this file is a record, nothing is skipped silently."""
    if not path.exists():
        return []
    alerts = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alerts.append(Alert(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} line {number}: not an alert record ({exc})") from exc
    return alerts


@dataclass
class Alerter:
    """Sends each alert once to every sink, retrying the sinks that failed (see the module docstring).

    ``state_path`` holds, per alert key: the sinks it is for, when each got it, the failures of the others and,
    until every sink has it, the alert itself (to retry it). Older state files (a JSON list of keys) count as
    delivered everywhere."""

    sinks: Sequence[Sink]
    state_path: Path
    attempts: int = 3  # per sink and call
    backoff_s: float = 0.5  # before the 2nd attempt; doubled before each next one
    budget_s: float = 10.0  # network time per call; plus at most one sink timeout
    _down: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # sink -> error, this Alerter

    def raise_alert(self, alert: Alert) -> bool:
        """Deliver ``alert`` to the sinks that do not have it yet, then retry the other pending deliveries.
        True when the alert is new, False when it was raised before (a duplicate sends nothing to a sink that
        got it)."""
        with self._locked_state() as state:
            new = alert.key not in state
            if new:
                state[alert.key] = {
                    "alert": asdict(alert),
                    "sinks": [sink.name for sink in self.sinks],
                    "delivered": {},
                    "failures": {},
                }
            self._deliver(state, first=alert.key)
        return new

    def flush(self) -> int:
        """Retry every pending delivery; the number still pending afterwards. Without any pending delivery it
        only reads the state file (no lock, no network): cheap enough for a sensor tick."""
        if not self.pending(_read(self.state_path)):
            return 0
        with self._locked_state() as state:
            self._deliver(state)
            return len(self.pending(state))

    def pending(self, state: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str]]:
        """(alert key, sink) of every delivery still owed, among the configured sinks."""
        state = _read(self.state_path) if state is None else state
        configured = {sink.name for sink in self.sinks}
        return [
            (key, name)
            for key, entry in state.items()
            for name in entry["sinks"]
            if name in configured and name not in entry["delivered"]
        ]

    def _deliver(self, state: dict[str, dict[str, Any]], first: str | None = None) -> None:
        deadline = time.monotonic() + self.budget_s
        by_name = {sink.name: sink for sink in self.sinks}
        keys = sorted(
            {key for key, _ in self.pending(state)}, key=lambda k: (k != first, state[k]["alert"]["raised_at"])
        )
        for key in keys:
            entry = state[key]
            alert = Alert(**entry["alert"])
            errors = {}
            for name in [n for n in entry["sinks"] if n in by_name and n not in entry["delivered"]]:
                error = self._down.get(name) or self._send(by_name[name], alert, deadline)
                if error is None:
                    entry["delivered"][name] = datetime.now(UTC).isoformat()
                    if entry["failures"].pop(name, None):
                        logger.warning("alert %s delivered to %s after earlier failures", key, name)
                else:
                    errors[name] = error
            for name, error in errors.items():  # after the other sinks: the notice follows the alert
                self._record_failure(entry, name, error)
            if all(n in entry["delivered"] for n in entry["sinks"]):
                entry.pop("alert")  # delivered everywhere: only the record remains
            _write(self.state_path, state)  # after each alert: a crash later never re-sends what went out

    def _send(self, sink: Sink, alert: Alert, deadline: float) -> str | None:
        """None when delivered; else the last error. Tries ``attempts`` times while the budget lasts."""
        error = "not attempted: this call's time budget was spent on other deliveries"
        for attempt in range(self.attempts):
            if attempt:
                pause = self.backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            if time.monotonic() >= deadline:
                break
            try:
                sink.send(alert)
                return None
            except Exception as failure:  # one broken sink must not hide the alert from the others
                error = f"{type(failure).__name__}: {failure}"
                logger.warning("alert sink %s failed for %s (attempt %d): %s", sink.name, alert.key, attempt + 1, error)
        else:
            self._down[sink.name] = f"{error} (failed every attempt earlier in this run step or tick)"
        return error

    def _record_failure(self, entry: dict[str, Any], sink: str, error: str) -> None:
        failure = entry["failures"].setdefault(sink, {"first_failed_at": datetime.now(UTC).isoformat(), "rounds": 0})
        failure.update(rounds=failure["rounds"] + 1, last_error=error)
        if failure.get("reported"):
            return
        alert = Alert(**entry["alert"])
        notice = Alert(
            kind=UNDELIVERED,
            subject=sink,
            episode=alert.key,
            summary=f"alert {alert.key} could not be delivered to {sink} ({error}); it is retried until it is",
            details={"alert": asdict(alert), "error": error},
        )
        fallbacks: list[Sink] = [LogSink()]
        fallbacks += [s for s in self.sinks if isinstance(s, JsonLinesSink) and s.name != sink]
        for fallback in fallbacks:
            try:
                fallback.send(notice)
            except Exception as problem:
                logger.error("could not report the undelivered alert %s on %s: %s", alert.key, fallback.name, problem)
        failure["reported"] = True

    @contextmanager
    def _locked_state(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_path.with_name(self.state_path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = _read(self.state_path)
            yield state
            _write(self.state_path, state)


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if isinstance(stored, list):  # the format before per-sink delivery: keys sent
        return {key: {"sinks": [], "delivered": {}, "failures": {}} for key in stored}
    return stored


def _write(path: Path, state: dict[str, dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".alerts.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def build_sinks(
    names: Sequence[str], *, jsonl_path: Path, webhook_url: str | None, slack_url: str | None
) -> list[Sink]:
    """Sinks by name (log, jsonl, webhook, slack); a webhook without a URL is a configuration error."""
    sinks: list[Sink] = []
    for name in names:
        if name in [sink.name for sink in sinks]:
            raise ValueError(f"alert sink {name!r} is listed twice")
        if name == "log":
            sinks.append(LogSink())
        elif name == "jsonl":
            sinks.append(JsonLinesSink(jsonl_path))
        elif name in ("webhook", "slack"):
            url = webhook_url if name == "webhook" else slack_url
            if not url:
                raise ValueError(f"alert sink {name!r} is configured but its URL is not set")
            sinks.append(WebhookSink(url, slack=name == "slack"))
        else:
            raise ValueError(f"unknown alert sink {name!r}; use log, jsonl, webhook or slack")
    return sinks
