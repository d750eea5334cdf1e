"""Runs spread over workers: MLOPS_EXECUTOR=celery (dagster-celery, Redis as broker) with two ``celery worker``
processes on loopback, a real Redis server, and a persistent Dagster instance under tmp_path (the shipped
dagster.yaml: the ``warehouse`` pool at 1). The run worker is a process of its own, as when the daemon launches
a run; every step is a Celery task that one of the workers takes."""

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import psutil
import pytest
from dagster._core.instance import DagsterInstance, InstanceRef

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.settings import REPO_ROOT, Settings
from mlops_pipelines_tests.conftest import finished, wait_until
from mlops_pipelines_tests.test_defs.conftest import RUN_WORKER

pytestmark = pytest.mark.slow
WORKERS = ("alpha", "beta")


@pytest.fixture
def celery_env(tmp_path: Path, data_dir: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the workers and the run worker: one instance, one data dir, one broker (the session's
    Redis server, database 1)."""
    pytest.importorskip("dagster_celery", reason="dagster-celery is in the dev and production extras")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # the shipped config: pool limit 1
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "8")
    broker = redis_url.rsplit("/", 1)[0] + "/1"
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "MLOPS_EXECUTOR": "celery",
        "MLOPS_CELERY_BROKER_URL": broker,
    }


@contextmanager
def celery_workers(
    tmp_path: Path, env: dict[str, str], preload: str = "", names: tuple[str, ...] = WORKERS
) -> Iterator[dict[str, subprocess.Popen]]:
    """Two ``celery worker`` processes of mlops_pipelines.celery_worker, one step at a time each, ready.
    ``preload``: a module each imports before it forks its pool process (the code location, loaded once)."""
    workers: dict[str, subprocess.Popen] = {}
    try:
        for name in names:
            with (tmp_path / f"worker-{name}.log").open("w") as log:
                workers[name] = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", "mlops_pipelines.celery_worker", "worker"),
                        *("--concurrency", "1", "-n", f"{name}@%h", "--loglevel", "INFO"),
                        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                        *(("--include", preload) if preload else ()),
                    ],
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for name, worker in workers.items():
            log_file = tmp_path / f"worker-{name}.log"
            wait_until(f"worker {name} is ready", lambda f=log_file: " ready." in f.read_text(), watch=[worker])
        yield workers
    finally:
        for worker in workers.values():  # the worker and its pool process: a session of their own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def run(tmp_path: Path, env: dict[str, str], module: str, *args: str, succeeds: bool = True) -> str:
    """A run worker process (``python -m module *args``) on the instance of DAGSTER_HOME; the run's id once it
    ended as ``succeeds`` says."""
    job = module.rsplit(".", 1)[-1]
    out, err = tmp_path / f"{job}.out", tmp_path / f"{job}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=env, cwd=tmp_path, stdout=stdout, stderr=stderr
        )
    logs = lambda: "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(tmp_path.glob("*.log")))  # noqa: E731
    wait_until(f"the {job} run ends", finished(process), log=lambda: err.read_text()[-4000:] + logs())
    assert (process.returncode == 0) == succeeds, err.read_text()[-4000:] + logs()
    return out.read_text().split()[-1]


def steps_by_worker(run_id: str) -> tuple[dict[str, str], dict[str, int], list[tuple[float, float, str]]]:
    """(step -> the Celery worker that executed it, step -> the pid that executed it, [(start, end, step)])."""
    workers, pids, starts, intervals = {}, {}, {}, []
    with DagsterInstance.from_ref(InstanceRef.from_dir(os.environ["DAGSTER_HOME"])) as instance:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.ENGINE_EVENT:  # dagster-celery's, from the worker
                if worker := event.engine_event_data.metadata.get("Celery worker"):
                    workers[event.step_key] = worker.value
            elif event.event_type == dg.DagsterEventType.STEP_START:
                pids[event.step_key] = event.pid
                starts[event.step_key] = record.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                intervals.append((starts[event.step_key], record.timestamp, event.step_key))
    return workers, pids, intervals


def test_steps_of_one_run_execute_on_both_workers(tmp_path: Path, celery_env: dict[str, str]) -> None:
    """Two independent steps that succeed only when they run at the same time: with one step per worker at a
    time, they ran on the two workers, each in a process of its worker, none in the run worker."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    with celery_workers(tmp_path, celery_env) as workers:
        run_id = run(tmp_path, celery_env, "mlops_pipelines_tests.test_defs.meeting_job", str(meeting))
        worker_of, pid_of, _ = steps_by_worker(run_id)
        parents = {step: psutil.Process(pid).ppid() for step, pid in pid_of.items()}
        worker_pids = {worker.pid: name for name, worker in workers.items()}
    assert set(worker_of) == {"left", "right"}, worker_of
    assert {name.split("@")[0] for name in worker_of.values()} == set(WORKERS), worker_of
    # the process that ran each step is a child (the pool process) of the worker that reported it
    assert {step: worker_pids.get(parent) for step, parent in parents.items()} == {
        step: name.split("@")[0] for step, name in worker_of.items()
    }


def test_the_feature_job_runs_on_celery_workers_with_its_warehouse_steps_serialized(
    tmp_path: Path, celery_env: dict[str, str], small_bars: pd.DataFrame
) -> None:
    """The code location's own features_job, every step a Celery task: it succeeds on the warehouse the workers
    share, and the pool still lets one warehouse step run at a time, whichever worker runs it."""
    with warehouse.connect(Settings.from_env().warehouse_path) as conn:  # the bars the views are built from
        market_bars.replace_all(conn, small_bars)
    with celery_workers(tmp_path, celery_env, preload="mlops_pipelines_tests.test_defs.jobs_for_test"):
        run_id = run(tmp_path, celery_env, RUN_WORKER, "features_job")
    worker_of, pid_of, intervals = steps_by_worker(run_id)
    views = {"features__returns", "features__volatility", "features__oscillators", "features__cross_sectional"}
    assert views | {"features__catalog", "features__online_store"} <= set(worker_of), worker_of
    assert set(worker_of) == set(pid_of), "a step ran outside a Celery worker"
    assert {name.split("@")[0] for name in worker_of.values()} <= set(WORKERS)
    for a, b in itertools.combinations(intervals, 2):
        assert a[1] <= b[0] or b[1] <= a[0], f"warehouse steps overlapped: {a} and {b}"


def test_a_step_whose_worker_process_is_killed_fails_the_run_instead_of_hanging(
    tmp_path: Path, celery_env: dict[str, str]
) -> None:
    """One worker; the step it runs waits for the other step, which cannot start there. Its process is killed
    (kill -9, as the OOM killer does): the step fails with Celery's WorkerLostError, the run fails and its run
    worker exits, instead of waiting for a result that never comes or running the step again unseen."""
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    with celery_workers(tmp_path, celery_env, names=("alpha",)):
        done: dict[str, str] = {}

        def kill_the_first_step() -> bool:
            checked_in = [(path.name, path.read_text()) for path in meeting.iterdir()]
            if checked_in and checked_in[0][1] and not done:  # the pid is written (not just the empty file)
                done["step"] = checked_in[0][0]
                os.kill(int(checked_in[0][1]), signal.SIGKILL)
            return bool(done)

        killer = threading.Thread(target=lambda: wait_until("a step checks in", kill_the_first_step), daemon=True)
        killer.start()
        run_id = run(tmp_path, celery_env, "mlops_pipelines_tests.test_defs.meeting_job", str(meeting), succeeds=False)
        killer.join(timeout=60)
    with DagsterInstance.from_ref(InstanceRef.from_dir(os.environ["DAGSTER_HOME"])) as instance:
        dagster_run = instance.get_run_by_id(run_id)
        assert dagster_run is not None and dagster_run.status == dg.DagsterRunStatus.FAILURE
        failures = [
            str(record.dagster_event.event_specific_data)
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            if record.dagster_event
        ]
    assert len(failures) == 1 and "WorkerLostError" in failures[0], failures
    assert f"[{done['step']}]" in failures[0], failures  # the killed step is the one named
