"""A job of two independent steps that can only succeed when they run at the same time, on the executor the
settings name (MLOPS_EXECUTOR): with one step at a time per Celery worker, they must run on two workers. Kept
apart from the code location, so that a worker loads it in a moment.

    python -m mlops_pipelines_tests.test_defs.meeting_job MEETING_DIR     # prints the run id; exit 0 on success
"""

import os
import socket
import sys
import time
from pathlib import Path

import dagster as dg

from mlops_pipelines.defs.executor import step_executor
from mlops_pipelines.settings import Settings

MEETING_TAG = "meeting_dir"  # run tag: the directory the steps check in at
TIMEOUT_S = 600.0


@dg.op
def meet(context: dg.OpExecutionContext):
    """Check in at the run's meeting directory, then wait until every step of the run has checked in."""
    directory = Path(context.run.tags[MEETING_TAG])
    (directory / context.node_handle.name).write_text(str(os.getpid()))
    deadline = time.monotonic() + TIMEOUT_S
    while len(list(directory.iterdir())) < len(context.job_def.nodes):
        if time.monotonic() > deadline:
            raise dg.Failure(f"{context.node_handle.name}: the other step never ran while this one did")
        time.sleep(0.1)
    return dg.Output(None, metadata={"pid": os.getpid(), "parent_pid": os.getppid(), "host": socket.gethostname()})


def meeting_job() -> dg.JobDefinition:
    @dg.job(name="meeting_job", executor_def=step_executor(Settings.from_env()) or dg.multiprocess_executor)
    def _meeting() -> None:
        meet.alias("left")()
        meet.alias("right")()

    return _meeting


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(meeting_job), instance=instance, tags={MEETING_TAG: sys.argv[1]})
        print(result.run_id)
        sys.exit(0 if result.success else 1)
