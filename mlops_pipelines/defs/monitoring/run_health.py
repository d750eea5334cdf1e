"""Runs whose processes were killed (kill -9, the out-of-memory killer, a crashed terminal) and what they leave.

Dagster's run monitoring (`run_monitoring` in dagster.yaml) fails a run whose worker the run launcher reports
dead, and frees the pool slots a finished run still holds (`free_slots_after_run_end_seconds`). But the
DefaultRunLauncher we run with (each run worker a subprocess of the code server) cannot report a worker's
health (`supports_check_run_worker_health` is False): only the code server that spawned a worker notices its
death. A run executed outside a code server (`mlops demo`, `dagster job execute`, a script) or whose code
server died with it stays STARTED, holding its `warehouse` slot, and every later warehouse run waits forever.
`run_worker_watchdog` closes that gap from the process ids Dagster records in each run's event log.
"""

import dagster as dg
from dagster._core.storage.runs.sqlite import SqliteRunStorage

from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.lib.core.processes import process_running
from mlops_pipelines.resources import MlflowResource, fail_training_runs_of_dead_dagster_runs

SPECS = load_model_specs()
# The run worker writes RUN_START; each step process of the multiprocess executor writes STEP_WORKER_STARTED.
RUN_PROCESS_EVENTS = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_WORKER_STARTED}


def dead_run_message(pids: list[int]) -> str:
    return (
        f"Every process of this run is gone (pids {', '.join(map(str, pids))}): it was killed. "
        "Marked failed by run_worker_watchdog; run monitoring frees its pool slots."
    )


@dg.sensor(
    name="run_worker_watchdog",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A STARTED run none of whose processes is alive any more (killed) -> marked FAILURE, so that run "
    "monitoring frees its warehouse slot and the failure sensors run. Only on a SQLite instance (one host).",
)
def run_worker_watchdog(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    instance = context.instance
    # A SQLite instance lives on one host, with every run that writes to it: its process ids mean something
    # here. Runs recorded in PostgreSQL may run anywhere; there a run launcher with worker health checks (or
    # max_runtime_seconds) has to catch them.
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return dg.SkipReason("not a SQLite instance: its runs' process ids may belong to other hosts")
    started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    failed = []
    for record in started:
        run_id = record.dagster_run.run_id
        seen = [
            (entry.dagster_event.pid, entry.timestamp)
            for entry in instance.all_logs(run_id, of_type=RUN_PROCESS_EVENTS)
            if entry.dagster_event is not None and entry.dagster_event.pid is not None
        ]
        if not seen or any(process_running(pid, at) for pid, at in seen):
            continue
        # its processes are gone, so nothing can change its status any more, unless it ended just before
        run = instance.get_run_by_id(run_id)
        if run is None or run.status != dg.DagsterRunStatus.STARTED:
            continue
        message = dead_run_message(sorted({pid for pid, _ in seen}))
        context.log.warning(f"run {run_id}: {message}")
        instance.report_run_failed(run, message)
        failed.append(run_id)
    if failed:
        return dg.SkipReason(f"marked {len(failed)} killed run(s) failed: {', '.join(failed)}")
    return dg.SkipReason(f"{len(started)} started run(s), none killed")


@dg.run_failure_sensor(
    name="mlflow_runs_of_failed_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # runs executed outside a code server (`mlops demo`, `dagster job execute`) have no code location: without
    # this the sensor would never see them fail
    monitor_all_code_locations=True,
    description="A failed run (a killed one too) -> the MLflow training runs it left RUNNING are marked FAILED.",
)
def mlflow_runs_of_failed_runs(context: dg.RunFailureSensorContext, mlflow: MlflowResource) -> None:
    found_by = f"found by mlflow_runs_of_failed_runs after run {context.dagster_run.run_id} failed"
    ended = fail_training_runs_of_dead_dagster_runs(mlflow, context.instance, SPECS, found_by=found_by)
    if ended:
        context.log.warning(f"MLflow runs left RUNNING by dead Dagster runs, marked FAILED: {', '.join(ended)}")
