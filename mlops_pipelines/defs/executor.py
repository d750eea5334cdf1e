"""Where a run's steps execute (MLOPS_EXECUTOR): ``multiprocess`` (Dagster's default: child processes of the run
worker, on its host) or ``celery`` (dagster-celery: each step is a task on a Redis queue, executed by whichever
``celery`` worker takes it; docker-compose.yaml's ``worker`` service).

The executor and the workers build their Celery app from the same settings (``celery_app_args``), so they
always agree on the broker, the queue and the delivery rules. Which steps may run on which host is the data
plane's question (docs/data_plane.md): every step of this code location opens the DuckDB warehouse, so every
worker runs where the warehouse file is, and the ``warehouse`` pool (one slot) still serializes its writers,
whichever worker runs them.
"""

from typing import Any

import dagster as dg
from dagster_celery import celery_executor
from dagster_celery.defaults import broker_transport_options
from dagster_celery.executor import CeleryExecutor

from mlops_pipelines.defs.resources import SETTINGS
from mlops_pipelines.settings import Settings

# Long steps (a training run, a feature rebuild at scale) must not be delivered twice: a task leaves the queue
# only when its step finished (acks_late), and Redis gives an unfinished task to another worker only after
# this long (longer than run monitoring's max_runtime_seconds, 6 h, which fails such a run first).
VISIBILITY_TIMEOUT_S = 24 * 3600
CELERY_CONFIG: dict[str, Any] = {
    # a worker process holds one step at a time and takes the next only when it is done: the steps of a run
    # spread over idle workers instead of queuing behind a busy one
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    # a worker process killed in the middle of a step (OOM, kill -9) fails that step (WorkerLostError) and so
    # the run, instead of the step being run again behind the run's back
    "task_reject_on_worker_lost": False,
    "broker_transport_options": {**broker_transport_options, "visibility_timeout": VISIBILITY_TIMEOUT_S},
    "broker_connection_retry_on_startup": True,
    "result_expires": 7 * 24 * 3600,
}


def broker(settings: Settings) -> Any:
    """The broker URL as executor config: the variable's name when it came from the environment (it may hold the
    Redis password; the run's config then stores the name, never the value)."""
    variable = settings.secret_variables.get("celery_broker_url")
    return {"env": variable} if variable else settings.celery_broker_url


def step_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The executor every job of the code location runs its steps with; None: Dagster's default (multiprocess)."""
    if settings.executor != "celery":
        return None
    url = broker(settings)
    return celery_executor.configured(
        {"broker": url, "backend": url, "config_source": CELERY_CONFIG}, name="celery_executor"
    )


def celery_app_args(settings: Settings) -> dict[str, Any]:
    """The Celery app's arguments for a worker (mlops_pipelines/celery_worker.py): those the executor uses."""
    return CeleryExecutor.for_cli(
        broker=settings.celery_broker_url, backend=settings.celery_broker_url, config_source=CELERY_CONFIG
    ).app_args()


@dg.definitions
def executor() -> dg.Definitions:
    # part of the definitions' shape: from the settings read once when the code location is imported
    return dg.Definitions(executor=step_executor(SETTINGS))
