"""The Celery app a step worker runs (MLOPS_EXECUTOR=celery; docker-compose.yaml's ``worker`` service):

    celery -A mlops_pipelines.celery_worker worker --concurrency 1 -n worker@%h

It takes steps from the Redis queue named by MLOPS_CELERY_BROKER_URL and executes each against the Dagster
instance the run worker names in the task (its storage: the shared PostgreSQL), with this code location's
definitions and resources built from the worker's own environment: give a worker the same MLOPS_* settings and
volumes as the code server (the warehouse file among them). One process per worker (``--concurrency 1``) suits
steps that use every core (DuckDB, LightGBM): add workers, not processes, to run more steps at once.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from mlops_pipelines.defs.executor import celery_app_args
from mlops_pipelines.settings import Settings

app = make_app(celery_app_args(Settings.from_env()))
execute_plan = create_task(app)
