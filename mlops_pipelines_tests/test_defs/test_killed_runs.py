"""A run killed with SIGKILL while it holds the warehouse slot, on a persistent instance with a real daemon.

Before run monitoring and the watchdog, such a run kept its slot (STARTED when run by a script; FAILURE when
launched by the daemon, whose code server noticed), and every later warehouse run waited for it forever; the
MLflow run of the killed training stayed RUNNING.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance import DagsterInstance, InstanceRef
from dagster._core.scheduler.instigation import InstigatorType

from mlops_pipelines.lib.core.tracking import DAGSTER_RUN_TAG, FAILURE_REASON_TAG, Tracking
from mlops_pipelines.settings import REPO_ROOT, Settings
from mlops_pipelines_tests.conftest import CEILING_S, finished, wait_until
from mlops_pipelines_tests.test_defs.conftest import RUN_WORKER, go

pytestmark = pytest.mark.slow

MODEL = "direction_classifier"
DAYS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-12"}
WORKSPACE = str(REPO_ROOT / "workspace.yaml")
PATIENCE_TICKS = 4  # of the watchdog (one every 30 s) after a kill, by which the daemon must have acted on it


def instance_config() -> dict:
    """The shipped dagster.yaml with short intervals, so that the test waits seconds, not minutes."""
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    short = {"poll_interval_seconds": 3, "free_slots_after_run_end_seconds": 3}
    config["run_monitoring"] = {**config.get("run_monitoring", {}), **short}
    # the hourly drift schedule must not queue a run that takes the pool meanwhile
    config["concurrency"]["runs"] = {"tag_concurrency_limits": [{"key": "dagster/schedule_name", "limit": 0}]}
    return config


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_a_killed_training_frees_the_warehouse_and_its_mlflow_run(
    definitions: dg.Definitions, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    """Two kills on one instance and daemon. script: executed outside a code server, nothing but the watchdog
    sees it die. daemon: launched from the queue as the UI, a schedule or a sensor do; its code server fails it,
    run monitoring frees its slot."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config()))
    env = {
        **os.environ,  # the definitions fixture's data dir and market size
        "PYTHONPATH": str(REPO_ROOT),
        "DAGSTER_HOME": str(home),
    }
    settings = Settings.from_env()
    tracking = Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)
    tracking.experiment_id(MODEL)  # the store exists before a process is frozen holding its init lock

    def start(*command: str, log: str) -> subprocess.Popen:
        with (tmp_path / log).open("w") as out:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        processes.append(process)
        return process

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:  # created before anyone uses it
        daemon = start(str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", WORKSPACE, log="daemon.log")
        for job, tags in (("ingestion_job", DAYS), ("features_job", {})):
            assert definitions.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success
        dataset = dg.AssetKey(["training", f"{MODEL}_dataset"])
        training = definitions.resolve_job_def("training_job")
        assert training.execute_in_process(instance=instance, asset_selection=[dataset]).success
        killed = {
            launched_by: kill_a_training_and_recover(launched_by, instance, tracking, tmp_path, start, env, daemon)
            for launched_by in ("script", "daemon")
        }
        # the run-failure sensors (every 30 s; checked for both kills at the end, so that the waits overlap):
        # mlflow_runs_of_failed_runs ends the MLflow run the SIGKILL left RUNNING, run_failure_alerts alerts the
        # failure, even without a code location
        for launched_by, (run_id, mlflow_run, killed_at) in killed.items():
            for sensor in ("mlflow_runs_of_failed_runs", "run_failure_alerts"):
                wait_until(
                    f"{launched_by}: {sensor} acts on the killed run",
                    lambda s=sensor, r=run_id, t=killed_at: (
                        sensor_acted(instance, s, r) or daemon_patience(instance, t, s)
                    ),
                    watch=[daemon],
                    log=lambda: (tmp_path / "daemon.log").read_text()[-3000:],
                )
            ended = tracking.client().get_run(mlflow_run)
            assert ended.info.status == "FAILED" and run_id in ended.data.tags[FAILURE_REASON_TAG]
            assert alerted(settings.data_dir / "alerts" / "alerts.jsonl", run_id)


def kill_a_training_and_recover(
    launched_by: str,
    instance: DagsterInstance,
    tracking: Tracking,
    tmp_path: Path,
    start: Callable[..., subprocess.Popen],
    env: dict[str, str],
    daemon: subprocess.Popen,
) -> tuple[str, str, float]:
    """Kill a training mid-step; the next warehouse run completes. Returns (run id, MLflow run, kill time)."""

    def log(*names: str) -> Callable[[], str]:
        return lambda: "\n".join(f"--- {n}\n{(tmp_path / n).read_text()[-3000:]}" for n in ("daemon.log", *names))

    known = {run.run_id for run in instance.get_runs(dg.RunsFilter(job_name="training_job"))}
    # the next warehouse run, loaded meanwhile, is submitted the moment the training is killed
    ready = tmp_path / f"{launched_by}_next.ready"
    next_log = f"{launched_by}_next.log"
    next_run = start(
        sys.executable,
        "-m",
        RUN_WORKER,
        "ingestion_job",
        "dagster/partition=2026-01-05",
        "--ready",
        str(ready),
        log=next_log,
    )
    if launched_by == "script":
        training = [sys.executable, "-m", RUN_WORKER, "training_job", "--assets", MODEL]
        watch = [daemon, start(*training, log="killed_run.log")]
    else:
        launch = [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-w", WORKSPACE, "-j", "training_job"]
        launch += ["-o", MODEL]
        subprocess.run(launch, env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=CEILING_S)
        watch = [daemon]
    run_id = wait_until(
        f"{launched_by}: the training step starts",
        lambda: training_step_started(instance, known),
        watch=watch,
        log=log("killed_run.log") if launched_by == "script" else log(),
    )
    wait_until(f"{launched_by}: the next run is ready", ready.exists, watch=[next_run], log=log(next_log))
    pids = run_pids(instance, run_id)  # its run worker and its step process
    # Step the run in slices, frozen between them, until its MLflow run exists: then kill it mid-step.
    deadline = time.monotonic() + CEILING_S
    signal_all(pids, signal.SIGSTOP)
    while (mlflow_run := running_mlflow_run(tracking, run_id)) is None:
        assert status(instance, run_id) == dg.DagsterRunStatus.STARTED, "the training ended before its MLflow run"
        assert time.monotonic() < deadline, "the training never created its MLflow run"
        signal_all(pids, signal.SIGCONT)
        time.sleep(0.2)
        signal_all(pids, signal.SIGSTOP)
    signal_all(pids, signal.SIGKILL)  # a script's run worker stays a zombie (not reaped): it must count as dead
    kill_time, killed_at = time.monotonic(), time.time()
    # the attack: no process of the run is left, and it holds the only warehouse slot
    assert run_id in held(instance)

    go(next_run)
    # Bounded by the daemon's progress, not by a guess at this machine's speed: the watchdog ticks every 30 s,
    # run monitoring polls every 3 s, the run-failure sensors run every 30 s: within PATIENCE_TICKS watchdog
    # ticks of the kill, all of it is done.
    wait_until(
        f"{launched_by}: the killed run's slot is freed",
        lambda: run_id not in held(instance) or daemon_patience(instance, killed_at, f"the slot of {run_id}"),
        watch=[daemon],
        log=log(),
    )
    wait_until(f"{launched_by}: the next warehouse run ends", finished(next_run), log=log(next_log))
    assert next_run.returncode == 0, (tmp_path / next_log).read_text()[-3000:]
    print(f"{launched_by}: next warehouse run done {time.monotonic() - kill_time:.0f} s after the kill")

    assert status(instance, run_id) == dg.DagsterRunStatus.FAILURE
    if launched_by == "script":
        [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "run_worker_watchdog" in (failure.message or "")
    return run_id, mlflow_run, killed_at


def daemon_patience(instance: DagsterInstance, since: float, what: str) -> bool:
    """False while the daemon is still within PATIENCE_TICKS watchdog ticks of ``since``; then a failure naming
    ``what``. A slow machine ticks later, so it gets more time; a daemon that ticks and still has not acted has
    failed."""
    ticks = watchdog_ticks(instance, since)
    assert ticks < PATIENCE_TICKS, (
        f"{what}: still not done after {ticks} watchdog ticks since the kill: held {held(instance)}"
    )
    return False


def watchdog_ticks(instance: DagsterInstance, since: float) -> int:
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    watchdogs = [state for state in states if state.name == "run_worker_watchdog"]
    if not watchdogs:  # it has not ticked yet
        return 0
    [watchdog] = watchdogs
    return len(instance.get_ticks(watchdog.instigator_origin_id, watchdog.selector_id, after=since))


def sensor_acted(instance: DagsterInstance, sensor: str, run_id: str) -> bool:
    """A run-status sensor writes this engine event on the run it has handled."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    return any(f'Sensor "{sensor}" acted on run status FAILURE' in (event.message or "") for event in events)


def run_pids(instance: DagsterInstance, run_id: str) -> set[int]:
    events = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_WORKER_STARTED}
    return {
        e.dagster_event.pid
        for e in instance.all_logs(run_id, of_type=events)
        if e.dagster_event and e.dagster_event.pid
    }


def training_step_started(instance: DagsterInstance, known: set[str]) -> str | None:
    """The id of a new training run (not in ``known``) whose model step has started."""
    for run in instance.get_runs(dg.RunsFilter(job_name="training_job")):
        if run.run_id in known:
            continue
        assert not run.is_finished, f"the training run ended ({run.status}) before its step started"
        started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if run.status == dg.DagsterRunStatus.STARTED and any(e.step_key == MODEL for e in started):
            return run.run_id
    return None


def running_mlflow_run(tracking: Tracking, dagster_run_id: str) -> str | None:
    """The MLflow run the training opened, read straight from the SQLite store: the MLflow client waits up to 20 s
    (its busy timeout) on a lock the frozen writer may hold; this read gives up at once and the run steps on."""
    store = tracking.tracking_uri.removeprefix("sqlite:///")
    query = (
        "SELECT runs.run_uuid FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid"
        " WHERE tags.key = ? AND tags.value = ? AND runs.status = 'RUNNING'"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0)) as db:
            row = db.execute(query, (DAGSTER_RUN_TAG, dagster_run_id)).fetchone()
    except sqlite3.OperationalError:  # locked by the frozen writer
        return None
    return row[0] if row else None


def alerted(alerts: Path, run_id: str) -> bool:
    lines = alerts.read_text().splitlines() if alerts.exists() else []
    return any(a["kind"] == "run_failed" and a["episode"] == run_id for a in map(json.loads, lines))


def status(instance: DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def held(instance: DagsterInstance) -> set[str]:
    """Runs holding or waiting for a warehouse slot."""
    info = instance.event_log_storage.get_concurrency_info("warehouse")
    return {slot.run_id for slot in info.claimed_slots} | {step.run_id for step in info.pending_steps}
