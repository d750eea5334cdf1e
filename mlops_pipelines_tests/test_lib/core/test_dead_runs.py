"""What a killed run leaves behind: is its process still there, and the MLflow runs it never ended."""

import os
import signal
import subprocess
import sys
import time

import psutil

from mlops_pipelines.lib.core.processes import process_running
from mlops_pipelines.lib.core.tracking import (
    DAGSTER_RUN_TAG,
    FAILURE_REASON_TAG,
    Tracking,
    fail_runs_of_dead_dagster_runs,
)


def test_a_live_process_is_running() -> None:
    assert process_running(os.getpid(), seen_at=time.time())


def test_a_process_that_exited_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_running(child.pid, seen_at=time.time())


def test_a_killed_child_not_yet_reaped_is_not() -> None:
    """A zombie still answers kill(pid, 0): the naive liveness check would call it alive."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(child.pid, 0)  # the pid still exists
        assert not process_running(child.pid, seen_at=time.time())
    finally:
        child.wait()


def test_a_reused_pid_is_not_the_process_that_was_seen() -> None:
    # our own pid, seen an hour before this process started: the kernel has given it to a newer process since
    started = psutil.Process().create_time()
    assert not process_running(os.getpid(), seen_at=started - 3600)
    assert process_running(os.getpid(), seen_at=started + 1)


def test_only_running_runs_of_dead_dagster_runs_are_failed(tracking: Tracking) -> None:
    client = tracking.client()

    def run(experiment: str, status: str, dagster_run: str | None) -> str:
        tags = {DAGSTER_RUN_TAG: dagster_run} if dagster_run else {}
        run_id = client.create_run(tracking.experiment_id(experiment), tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    killed = run("direction_classifier", "RUNNING", "dead-1")
    untouched = {
        run("direction_classifier", "RUNNING", "alive-1"): "RUNNING",  # its Dagster run is still going
        run("direction_classifier", "RUNNING", None): "RUNNING",  # not started by Dagster
        run("direction_classifier", "FINISHED", "dead-2"): "FINISHED",  # ended properly
        run("volatility_forecaster", "RUNNING", "dead-3"): "RUNNING",  # an experiment not asked about
    }

    def alive(dagster_run_id: str) -> bool:
        return dagster_run_id.startswith("alive")

    experiments = ["direction_classifier", "no_such_experiment"]
    ended = fail_runs_of_dead_dagster_runs(client, experiments, alive, found_by="found by the test")
    assert ended == [killed]
    failed = client.get_run(killed)
    assert failed.info.status == "FAILED" and failed.info.end_time is not None
    reason = failed.data.tags[FAILURE_REASON_TAG]
    assert "dead-1" in reason and "found by the test" in reason
    assert {run_id: client.get_run(run_id).info.status for run_id in untouched} == untouched
    assert fail_runs_of_dead_dagster_runs(client, experiments, alive, found_by="again") == []  # once only
