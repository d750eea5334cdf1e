"""Killed runs on a real instance: the watchdog fails them, and their MLflow runs are ended FAILED.

The end-to-end case (a real daemon, a run killed with SIGKILL while it holds the warehouse slot) is in
test_killed_runs.py; these tests write the events a run's processes write, with the pids of real processes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.events import EngineEventData
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator, RunCoordinator
from dagster._core.test_utils import create_run_for_test
from dagster._serdes.config_class import ConfigurableClassData

from mlops_pipelines.defs.monitoring.run_health import mlflow_runs_of_failed_runs, run_worker_watchdog
from mlops_pipelines.lib.core.tracking import DAGSTER_RUN_TAG, FAILURE_REASON_TAG, Tracking
from mlops_pipelines.resources import MlflowResource
from mlops_pipelines.settings import REPO_ROOT, Settings


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def started_run(instance: dg.DagsterInstance, run_worker: int, *step_workers: int) -> str:
    """A STARTED run with the process events Dagster writes: RUN_START by the run worker, STEP_WORKER_STARTED by
    each step process of the multiprocess executor."""
    run = create_run_for_test(instance, job_name="ingestion_job", status=dg.DagsterRunStatus.NOT_STARTED)
    events = [dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, "ingestion_job", pid=run_worker)]
    events += [
        dg.DagsterEvent(
            dg.DagsterEventType.STEP_WORKER_STARTED.value,
            "ingestion_job",
            step_key="market_bars",
            event_specific_data=EngineEventData(metadata={"pid": dg.MetadataValue.text(str(pid))}),
            pid=pid,
        )
        for pid in step_workers
    ]
    for event in events:
        instance.report_dagster_event(event, run.run_id)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
    return run.run_id


def watchdog_tick(instance: dg.DagsterInstance) -> str:
    result = run_worker_watchdog(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
    return result.skip_message or ""


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def test_watchdog_fails_a_run_whose_processes_are_all_gone(instance: dg.DagsterInstance) -> None:
    killed = started_run(instance, dead_pid(), dead_pid())
    orphan_step = started_run(instance, dead_pid(), os.getpid())  # its worker is gone, a step still runs
    alive = started_run(instance, os.getpid())
    assert killed in watchdog_tick(instance)
    assert status(instance, killed) == dg.DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(killed, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "run_worker_watchdog" in (failure.message or "")
    # placebo: a run with a live process, and one whose step still writes the warehouse, are left alone
    assert status(instance, orphan_step) == status(instance, alive) == dg.DagsterRunStatus.STARTED
    assert "none killed" in watchdog_tick(instance)  # the failed run is not judged twice


def test_watchdog_leaves_instances_on_other_hosts_alone() -> None:
    """Run ids in a PostgreSQL instance may come from any host: a pid there means nothing here."""
    with dg.DagsterInstance.ephemeral() as instance:
        run = started_run(instance, dead_pid())
        assert "not a SQLite instance" in watchdog_tick(instance)
        assert status(instance, run) == dg.DagsterRunStatus.STARTED


def mlflow_run(tracking: Tracking, model: str, dagster_run_id: str) -> str:
    client = tracking.client()
    return client.create_run(tracking.experiment_id(model), tags={DAGSTER_RUN_TAG: dagster_run_id}).info.run_id


def test_run_failure_ends_the_mlflow_runs_it_left_running(instance: dg.DagsterInstance, tracking: Tracking) -> None:
    killed, alive = started_run(instance, dead_pid()), started_run(instance, os.getpid())
    left_running = mlflow_run(tracking, "volatility_forecaster", killed)
    training_now = mlflow_run(tracking, "direction_classifier", alive)
    run = instance.get_run_by_id(killed)
    assert run is not None
    instance.report_run_failed(run, "killed")
    [failure] = instance.all_logs(killed, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert failure.dagster_event is not None
    mlflow = MlflowResource(
        tracking_uri=tracking.tracking_uri, registry_uri=tracking.registry_uri, artifact_root=tracking.artifact_root
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="mlflow_runs_of_failed_runs",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources={"mlflow": mlflow},
    ).for_run_failure()
    mlflow_runs_of_failed_runs(context)
    client = tracking.client()
    ended = client.get_run(left_running)
    assert ended.info.status == "FAILED" and killed in ended.data.tags[FAILURE_REASON_TAG]
    assert client.get_run(training_now).info.status == "RUNNING"  # placebo: its Dagster run is alive


def test_training_ends_the_mlflow_runs_of_its_dead_predecessors_first(
    definitions: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    settings = Settings.from_env()  # the store the definitions use (under the test's data dir)
    tracking = Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)
    killed, alive = started_run(instance, dead_pid()), started_run(instance, os.getpid())
    run = instance.get_run_by_id(killed)
    assert run is not None
    instance.report_run_failed(run, "killed")
    left_running = mlflow_run(tracking, "direction_classifier", killed)
    training_now = mlflow_run(tracking, "direction_classifier", alive)
    other_model = mlflow_run(tracking, "volatility_forecaster", killed)
    # the sweep comes first: with no training set in this warehouse the step then fails, after it
    result = definitions.resolve_job_def("training_job").execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("direction_classifier")], raise_on_error=False
    )
    assert not result.success
    client = tracking.client()
    ended = client.get_run(left_running)
    assert ended.info.status == "FAILED"
    assert "next materialization of direction_classifier" in ended.data.tags[FAILURE_REASON_TAG]
    assert client.get_run(training_now).info.status == "RUNNING"
    assert client.get_run(other_model).info.status == "RUNNING"  # another model's: its own training sweeps it


def test_production_instance_config_has_the_local_pools_and_monitoring(tmp_path: Path) -> None:
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    shutil.copy(REPO_ROOT / "docker" / "dagster.yaml", tmp_path / "dagster.yaml")
    production, _ = dagster_instance_config(str(tmp_path))  # validated against Dagster's instance schema
    # the same limit per pool (the warehouse writers serialized); production counts it per step (granularity op)
    assert production["concurrency"]["pools"]["default_limit"] == local["concurrency"]["pools"]["default_limit"] == 1
    assert production["run_monitoring"] == local["run_monitoring"] and local["run_monitoring"]["enabled"]
    database = production["storage"]["postgres"]["postgres_db"]
    credentials = {k: v for k, v in database.items() if k != "scheme"}  # scheme: the driver, postgresql+psycopg2
    assert all(set(value) == {"env"} for value in credentials.values()), database  # no credential in the file
    coordinator = production["run_coordinator"]
    data = ConfigurableClassData(coordinator["module"], coordinator["class"], yaml.safe_dump(coordinator["config"]))
    assert isinstance(data.rehydrate(RunCoordinator), QueuedRunCoordinator)


def test_local_instance_config_runs_monitoring_with_the_default_run_launcher() -> None:
    """max_resume_run_attempts above 0 would stop the instance from loading (the launcher cannot resume)."""
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=local) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
