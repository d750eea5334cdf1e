"""Credentials in the configuration (webhook tokens, passwords in MLflow URIs) never reach the Dagster instance:
run history keeps the variable's name, the resources read the value when they are built."""

import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.defs.monitoring.alerts import run_failure_alerts
from mlops_pipelines.resources import AlertsResource
from mlops_pipelines_tests.test_lib.core.test_alerts import Endpoint, jsonl_records

SECRETS = {
    "MLOPS_ALERT_WEBHOOK_URL": "hook-token-5f2c91e7",
    "MLOPS_SLACK_WEBHOOK_URL": "slack-token-a83b04d6",
    "MLOPS_MLFLOW_TRACKING_URI": "mlflow-password-7d19c2ee",
    "MLOPS_MLFLOW_REGISTRY_URI": "registry-password-0be5f3a1",
}


def readable_contents(path: Path) -> Iterator[bytes]:
    """A file's bytes and, for a SQLite database, every value of every table, zlib-compressed blobs (Dagster's
    snapshots) decompressed: what someone with a copy of the instance directory can read."""
    data = path.read_bytes()
    yield data
    if not data.startswith(b"SQLite format 3"):
        return
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, str):
                        yield value.encode()
                    elif isinstance(value, bytes):
                        yield value
                        yield inflated(value)


def inflated(blob: bytes) -> bytes:
    try:
        return zlib.decompress(blob)
    except zlib.error:
        return b""  # not compressed


def found_in(directory: Path, needles: list[str]) -> dict[str, list[str]]:
    """needle -> the files under ``directory`` that contain it (anywhere, compressed or not)."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        for content in readable_contents(path):
            for needle in needles:
                if needle.encode() in content and str(path) not in hits.get(needle, []):
                    hits.setdefault(needle, []).append(str(path))
    return hits


@pytest.mark.slow
def test_no_credential_reaches_the_instance(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    webhook, slack = Endpoint().start(), Endpoint.down()  # one sink up, one down (its errors get logged)
    try:
        monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "8")
        monkeypatch.setenv("MLOPS_ALERT_SINKS", "log,jsonl,webhook,slack")
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", f"{webhook.url}/{SECRETS['MLOPS_ALERT_WEBHOOK_URL']}")
        monkeypatch.setenv("MLOPS_SLACK_WEBHOOK_URL", f"{slack.url}/{SECRETS['MLOPS_SLACK_WEBHOOK_URL']}")
        # production's MLflow: a server and a PostgreSQL registry behind passwords (never contacted by this job)
        monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", f"http://ml:{SECRETS['MLOPS_MLFLOW_TRACKING_URI']}@127.0.0.1:9")
        monkeypatch.setenv(
            "MLOPS_MLFLOW_REGISTRY_URI", f"postgresql://ml:{SECRETS['MLOPS_MLFLOW_REGISTRY_URI']}@127.0.0.1:9/mlflow"
        )
        from mlops_pipelines.definitions import defs

        definitions = defs()
        home = tmp_path / "dagster_home"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            # a real run that fails (its blocking quarantine check), then the real failure sensor alerting on it
            # with the resources as the daemon builds them
            result = definitions.resolve_job_def("ingestion_job").execute_in_process(
                instance=instance,
                tags={"dagster/partition": "2026-01-02"},
                run_config={"ops": {"market_bars": {"config": {"max_quarantine_ratio": 0.0}}}},
                raise_on_error=False,
            )
            assert not result.success
            failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=failure,
                resources=definitions.resources,
            ).for_run_failure()
            run_failure_alerts(context)

            # and an alert raised inside a run (as the monitoring assets do): its step's logs are captured too
            @dg.asset
            def raises_an_alert(context: dg.AssetExecutionContext, alerts: AlertsResource) -> None:
                from mlops_pipelines.lib.core.alerts import Alert

                alerts.alerter().raise_alert(Alert("severe_drift", "direction_classifier", "2026-01-02", "SEVERE"))

            assert dg.materialize([raises_an_alert], resources=definitions.resources, instance=instance).success
    finally:
        webhook.stop()

    # the values were read where they are used: the webhook got the alerts, the down Slack was reported
    assert {body["kind"] for body in webhook.delivered} == {"check_failed", "run_failed", "severe_drift"}
    assert {
        r["subject"] for r in jsonl_records(data_dir / "alerts" / "alerts.jsonl") if r["kind"] == "alert_undelivered"
    } == {"slack"}

    hits = found_in(home, [*SECRETS.values(), *SECRETS])
    assert not {secret: hits[secret] for secret in SECRETS.values() if secret in hits}
    assert not found_in(data_dir / "alerts", list(SECRETS.values()))  # nor the alert records and their state
    # placebo: the scan reads inside the compressed job snapshots, where each variable is named instead
    assert all(name in hits for name in SECRETS), hits.keys()


def test_credentials_are_passed_by_variable_name(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipelines.defs.resources import resources_for
    from mlops_pipelines.settings import Settings

    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    local = resources_for(Settings.from_env())  # the local default: a SQLite path, no credential, passed as is
    assert local["mlflow"].tracking_uri == f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"  # type: ignore[attr-defined]
    assert local["alerts"].webhook_url is None  # type: ignore[attr-defined]

    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://ml:pw@mlflow:5000")
    monkeypatch.setenv("MLOPS_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
    resources = resources_for(Settings.from_env())
    mlflow, alerts = resources["mlflow"], resources["alerts"]
    # the registry defaults to the tracking URI, so it names the same variable
    assert [getattr(mlflow, f).env_var_name for f in ("tracking_uri", "registry_uri")] == [
        "MLOPS_MLFLOW_TRACKING_URI"
    ] * 2
    assert alerts.slack_webhook_url.env_var_name == "MLOPS_SLACK_WEBHOOK_URL"  # type: ignore[attr-defined]
    assert alerts.webhook_url is None  # type: ignore[attr-defined]
