"""Two Dagster daemons on one PostgreSQL instance (a second one started by mistake, or an old one not yet gone
during a deploy): their retraining-sensor ticks request one retraining per drift episode, not two, even when their
first ticks race in the same second (each claims the run key first: ``lib/monitoring/retraining_claims.py``). The
sensor's cursor, its runs and their run keys live in PostgreSQL, where both daemons read them."""

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_pipelines.defs.monitoring.sensors import retraining_sensor
from mlops_pipelines.lib.monitoring.drift_status import update_status
from mlops_pipelines.settings import REPO_ROOT
from mlops_pipelines_tests.conftest import wait_until
from mlops_pipelines_tests.services import Postgres
from mlops_pipelines_tests.test_production.conftest import (
    dagster_postgres_environment,
    production_instance_config,
    unique,
)

SENSOR = retraining_sensor.name
MODELS = ("direction_classifier", "volatility_forecaster")
WINDOW_END = datetime(2026, 2, 21, tzinfo=UTC)


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen]]:
    """The daemon processes the test starts (each its own process group, with its code server): all stopped at
    the end, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def finished_ticks(instance: dg.DagsterInstance) -> list:
    states = [s for s in instance.all_instigator_state() if s.name == SENSOR]
    if not states:
        return []
    ticks = instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id)
    return [t for t in ticks if t.status.value != "STARTED"]


@pytest.mark.slow
def test_two_daemons_ticking_the_retraining_sensor_request_one_retraining_per_model(
    postgres_server: Postgres,
    data_dir: Path,
    tmp_path: Path,
    daemons: list[subprocess.Popen],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = production_instance_config(tmp_path / "dagster")
    config["concurrency"]["runs"]["max_concurrent_runs"] = 0  # runs stay QUEUED: the test is about requests
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    (home / "workspace.yaml").write_text((REPO_ROOT / "workspace.yaml").read_text())
    environment = {**os.environ, **dagster_postgres_environment(postgres_server, unique("dagster"))}
    environment |= {"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "MLOPS_SYNTHETIC_SYMBOLS": "6"}
    for model in MODELS:  # the hourly drift job's verdict: SEVERE for both deployed models
        entry = {"version": "1", "severity": "SEVERE", "window_end": WINDOW_END.isoformat()}
        update_status(data_dir / "monitoring" / "drift_status.json", model, "feature_drift", entry)

    daemon = str(Path(sys.executable).parent / "dagster-daemon")
    logs = [tmp_path / f"daemon-{i}.log" for i in range(2)]
    for log in logs:  # both at once: their first ticks race
        with log.open("w") as out:
            daemons.append(
                subprocess.Popen(
                    [daemon, "run", "-w", str(home / "workspace.yaml")],
                    cwd=REPO_ROOT,
                    env=environment,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def tail() -> str:  # what each daemon said about the sensor, and its last lines
        def said(log: Path) -> list[str]:
            lines = log.read_text().splitlines()
            return [line for line in lines if SENSOR in line] + ["..."] + lines[-10:]

        return "\n".join(f"--- {log}\n" + "\n".join(said(log)) for log in logs)

    for name, value in environment.items():
        if name.startswith("DAGSTER_"):
            monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        # each daemon evaluates the sensor (the second one 60 s after the first at the latest: the sensor's
        # minimum interval holds across daemons, through the tick history in PostgreSQL)
        def evaluated() -> bool:
            return all(SENSOR in log.read_text() for log in logs) and len(finished_ticks(instance)) >= 2

        wait_until("both daemons ticked the retraining sensor", evaluated, watch=daemons, log=tail, ceiling_s=900)
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": SENSOR}))
        keys = sorted(run.tags["dagster/run_key"] for run in runs)
        assert keys == sorted(f"retrain:{model}:{WINDOW_END.isoformat()}" for model in MODELS), tail()
        assert all(run.status == dg.DagsterRunStatus.QUEUED for run in runs)

        # The run keys hold on their own: with the retraining runs over (canceled here) and the cursor lost (an
        # operator's `dagster sensor cursor --delete`), the next ticks see the episode again, find its runs by run
        # key in PostgreSQL and request none.
        for run in runs:
            instance.report_run_canceled(run)
        ticks = len(finished_ticks(instance))
        dagster = [str(Path(sys.executable).parent / "dagster"), "sensor", "cursor", SENSOR, "--delete"]
        done = subprocess.run(
            [*dagster, "-w", str(home / "workspace.yaml")], cwd=REPO_ROOT, env=environment, capture_output=True
        )
        assert done.returncode == 0, done.stderr

        def requested() -> list[dg.DagsterRun]:
            return instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": SENSOR}))

        # two ticks after the cursor was lost: they either find the runs (no request) or (the bug) create new ones
        wait_until(
            "two ticks after the cursor was lost",
            lambda: len(finished_ticks(instance)) >= ticks + 2 or len(requested()) > len(MODELS),
            watch=daemons,
            log=tail,
            ceiling_s=900,
        )
        assert len(requested()) == len(MODELS), tail()
