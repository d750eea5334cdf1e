"""A run killed with SIGKILL while it holds the warehouse slot, on a persistent instance with a real daemon.

Before run monitoring and the watchdog, such a run kept its slot (STARTED when run by a script; FAILURE when
launched by the daemon, whose code server noticed), and every later warehouse run waited for it forever; the
MLflow run of the killed training stayed RUNNING.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import yaml
from dagster._core.instance import DagsterInstance, InstanceRef
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import OperationalError

from mlops_pipelines.lib.core.tracking import DAGSTER_RUN_TAG, FAILURE_REASON_TAG, Tracking
from mlops_pipelines.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.slow

MODEL = "direction_classifier"
DAYS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-12"}
NEXT_RUN_BOUND_S = 180  # from the kill to the end of the next warehouse run

JOBS_MODULE = textwrap.dedent("""
    from mlops_pipelines.definitions import defs

    def training_job():
        return defs().resolve_job_def("training_job")

    def ingestion_job():
        return defs().resolve_job_def("ingestion_job")
""")
# A run executed outside a code server, as `dagster job execute` or a script does (multiprocess executor).
# argv: job, asset keys (comma-separated, may be empty), tags.
RUN_JOB = textwrap.dedent("""
    import sys
    import dagster as dg
    import jobs_for_test
    assets = [dg.AssetKey.from_user_string(key) for key in sys.argv[2].split(",") if key]
    tags = dict(arg.split("=", 1) for arg in sys.argv[3:])
    with dg.DagsterInstance.get() as instance:
        job = dg.reconstructable(getattr(jobs_for_test, sys.argv[1]))
        result = dg.execute_job(job, instance=instance, tags=tags, asset_selection=assets or None)
        sys.exit(0 if result.success else 1)
""")


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


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Every process group the test starts; all killed at the end, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


T = TypeVar("T")


def wait_for(what: str, predicate: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


@pytest.mark.parametrize("launched_by", ["script", "daemon"])
def test_a_killed_training_frees_the_warehouse_and_its_mlflow_run(
    launched_by: str, definitions: dg.Definitions, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    """script: executed outside a code server, nothing but the watchdog sees it die. daemon: launched from the
    queue as the UI, a schedule or a sensor do; its code server fails it, run monitoring frees its slot."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config()))
    (tmp_path / "jobs_for_test.py").write_text(JOBS_MODULE)
    env = {
        **os.environ,  # the definitions fixture's data dir and market size
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        "DAGSTER_HOME": str(home),
    }
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO_ROOT / "workspace.yaml")
    settings = Settings.from_env()
    tracking = Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)
    experiment = tracking.experiment_id(MODEL)  # the store exists before a process is frozen holding its init lock

    def start(*command: str, log: str) -> subprocess.Popen:
        with (tmp_path / log).open("w") as out:
            process = subprocess.Popen(
                command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        processes.append(process)
        return process

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:  # created before anyone uses it
        start(str(bin_dir / "dagster-daemon"), "run", "-w", workspace, log="daemon.log")
        for job, tags in (("ingestion_job", DAYS), ("features_job", {})):
            assert definitions.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success
        dataset = dg.AssetKey(["training", f"{MODEL}_dataset"])
        training = definitions.resolve_job_def("training_job")
        assert training.execute_in_process(instance=instance, asset_selection=[dataset]).success

        if launched_by == "script":
            start(sys.executable, "-c", RUN_JOB, "training_job", MODEL, log="killed_run.log")
        else:
            launch = [str(bin_dir / "dagster"), "job", "launch", "-w", workspace, "-j", "training_job", "-o", MODEL]
            subprocess.run(launch, env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
        run_id = wait_for("the training step starts", lambda: step_started(instance, MODEL), 300)
        pids = run_pids(instance, run_id)  # its run worker and its step process
        # Step the run in slices, frozen between them, until its MLflow run exists: then kill it mid-step.
        mlflow_run = None
        deadline = time.monotonic() + 120
        while mlflow_run is None and time.monotonic() < deadline:
            signal_all(pids, signal.SIGSTOP)
            mlflow_run = running_mlflow_run(tracking, experiment, run_id)
            if mlflow_run is None:
                signal_all(pids, signal.SIGCONT)
                time.sleep(0.2)
        assert mlflow_run is not None, "the training never created its MLflow run"
        signal_all(pids, signal.SIGKILL)  # a script's run worker stays a zombie (not reaped): it must count as dead
        kill_time = time.monotonic()
        # the attack: no process of the run is left, and it holds the only warehouse slot
        assert run_id in held(instance)

        next_run = start(
            sys.executable, "-c", RUN_JOB, "ingestion_job", "", "dagster/partition=2026-01-05", log="next_run.log"
        )
        try:
            next_run.wait(timeout=NEXT_RUN_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the next warehouse run still waits {NEXT_RUN_BOUND_S} s after the kill: {held(instance)}")
        assert next_run.returncode == 0, (tmp_path / "next_run.log").read_text()[-3000:]
        print(f"{launched_by}: next warehouse run done {time.monotonic() - kill_time:.0f} s after the kill")

        assert status(instance, run_id) == dg.DagsterRunStatus.FAILURE
        assert run_id not in held(instance)
        if launched_by == "script":
            [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "run_worker_watchdog" in (failure.message or "")
        # the run-failure sensor ends the MLflow run the SIGKILL left RUNNING
        ended = wait_for("the MLflow run is marked FAILED", lambda: failed_mlflow_run(tracking, mlflow_run), 120, 2)
        assert run_id in ended.data.tags[FAILURE_REASON_TAG]
        # and run_failure_alerts saw it too, even without a code location
        alerts = settings.data_dir / "alerts" / "alerts.jsonl"
        wait_for("the killed run is alerted", lambda: alerted(alerts, run_id), 60)


def run_pids(instance: DagsterInstance, run_id: str) -> set[int]:
    events = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_WORKER_STARTED}
    return {
        e.dagster_event.pid
        for e in instance.all_logs(run_id, of_type=events)
        if e.dagster_event and e.dagster_event.pid
    }


def step_started(instance: DagsterInstance, step_key: str) -> str | None:
    for run in instance.get_runs(dg.RunsFilter(job_name="training_job", statuses=[dg.DagsterRunStatus.STARTED])):
        if any(e.step_key == step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)):
            return run.run_id
    return None


def running_mlflow_run(tracking: Tracking, experiment: str, dagster_run_id: str) -> str | None:
    query = f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}' and attributes.status = 'RUNNING'"
    try:
        runs = tracking.client().search_runs([experiment], filter_string=query)
    except (MlflowException, OperationalError):  # the store is locked by the frozen writer: step on and look again
        return None
    return runs[0].info.run_id if runs else None


def failed_mlflow_run(tracking: Tracking, mlflow_run_id: str) -> Run | None:
    run = tracking.client().get_run(mlflow_run_id)
    return run if run.info.status == "FAILED" else None


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
