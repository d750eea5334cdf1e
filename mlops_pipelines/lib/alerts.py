"""Alerts: one event, several sinks (structured log, JSON-lines file, generic webhook, Slack incoming webhook),
deduplicated per (kind, subject, episode) so that one drift episode or one failed run alerts once."""

import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger("mlops_pipelines.alerts")


@dataclass(frozen=True)
class Alert:
    kind: str  # severe_drift | critical_performance | check_failed | run_failed
    subject: str  # model, asset or job
    episode: str  # what makes two alerts the same event (a window end, a run id)
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    raised_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}:{self.episode}"


class Sink(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogSink:
    def send(self, alert: Alert) -> None:
        logger.warning("ALERT %s", json.dumps(asdict(alert), sort_keys=True))


@dataclass(frozen=True)
class JsonLinesSink:
    path: Path

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(alert), sort_keys=True) + "\n")


@dataclass(frozen=True)
class WebhookSink:
    """POSTs the alert as JSON; ``slack=True`` sends Slack's incoming-webhook payload instead."""

    url: str
    slack: bool = False
    timeout_s: float = 5.0

    def send(self, alert: Alert) -> None:
        body = (
            {"text": f":rotating_light: [{alert.kind}] {alert.subject}: {alert.summary}"}
            if self.slack
            else asdict(alert)
        )
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if response.status >= 300:
                raise RuntimeError(f"alert webhook {self.url} answered HTTP {response.status}")


@dataclass
class Alerter:
    """Sends each alert once to every sink; a failing sink is logged and does not stop the others."""

    sinks: Sequence[Sink]
    state_path: Path  # keys already sent (JSON), so dedup survives restarts

    def _sent(self) -> set[str]:
        return set(json.loads(self.state_path.read_text())) if self.state_path.exists() else set()

    def raise_alert(self, alert: Alert) -> bool:
        """True when the alert was sent, False when it was a duplicate."""
        sent = self._sent()
        if alert.key in sent:
            return False
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception:  # one broken sink must not hide the alert from the others
                logger.exception("alert sink %s failed for %s", type(sink).__name__, alert.key)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".alerts.", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(sorted(sent | {alert.key}), handle)
        os.replace(tmp, self.state_path)
        return True


def build_sinks(
    names: Sequence[str], *, jsonl_path: Path, webhook_url: str | None, slack_url: str | None
) -> list[Sink]:
    """Sinks by name (log, jsonl, webhook, slack); a webhook without a URL is a configuration error."""
    sinks: list[Sink] = []
    for name in names:
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
