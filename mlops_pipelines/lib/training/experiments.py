"""An MLflow experiment (one per model) as an operator reads it: ``mlops experiments show NAME`` and the API's
``GET /api/v1/ml/lifecycle/experiments/{name}`` both answer from ``experiment_detail``."""

import math
from typing import Any
from urllib.parse import quote

from mlflow import MlflowClient

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.times import utc_time
from mlops_pipelines.lib.core.tracking import run_ui_url


def experiment_detail(client: MlflowClient, ui_url: str, name: str) -> dict[str, Any]:
    """The experiment (id, artifact location, link in the MLflow UI at ``ui_url``) and its runs, newest first,
    each with status, times, the Dagster run and dataset it came from, every metric (a non-finite one as null),
    param and tag, and its link. ``NotFound`` names the known experiments."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = [e.name for e in client.search_experiments()]
        raise NotFound(f"no experiment {name!r}; known experiments: {', '.join(known) or 'none yet'}")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    return {
        "name": experiment.name,
        "experiment_id": experiment.experiment_id,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "link": f"{ui_url.rstrip('/')}/#/experiments/{quote(experiment.experiment_id)}",
        "runs": [
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "started": utc_time(run.info.start_time),
                "ended": utc_time(run.info.end_time),
                "dagster_run_id": run.data.tags.get("dagster_run_id"),
                "dataset_id": run.data.tags.get("dataset_hash", "")[:12],
                "metrics": {k: v if math.isfinite(v) else None for k, v in sorted(run.data.metrics.items())},
                "params": dict(sorted(run.data.params.items())),
                "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
                "link": run_ui_url(ui_url, experiment.experiment_id, run.info.run_id),
            }
            for run in runs
        ],
    }
