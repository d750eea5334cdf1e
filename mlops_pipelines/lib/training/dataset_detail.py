"""The stored training sets as an operator reads them: ``mlops datasets list|show`` and the API's
``GET /api/v1/features/datasets[/{id}]`` both answer from here. Every value is JSON-ready; times are ISO 8601 UTC.
"""

import json
from typing import Any

import duckdb
from mlflow import MlflowClient

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.times import utc_time
from mlops_pipelines.lib.training.datasets import dataset_record, list_datasets

_TIMES = ("first_decision", "last_decision", "created_at", "training_cutoff")
_JSON = ("features", "feature_views", "label")


def dataset_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One registry row: id, content hash, model, table, row counts (whole and per split), decision time range,
    training cutoff, features, feature views with the version of each (as the model spec pinned them), label
    definition, the Dagster run that built it."""
    out = {**row, **{t: utc_time(row.get(t)) for t in _TIMES}}
    for name in _JSON:
        out[name] = json.loads(row[name]) if row.get(name) else None
    return out


def dataset_rows(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every stored training set, newest first ([] before the first one)."""
    return [dataset_summary(row) for row in list_datasets(conn)]


def dataset_detail(conn: duckdb.DuckDBPyConnection, client: MlflowClient, dataset_id: str) -> dict[str, Any]:
    """One training set (``dataset_summary``) and the model versions trained on it (registered versions of its
    model whose ``dataset_hash`` tag is its hash). ``NotFound`` for an unknown id."""
    found = dataset_record(conn, dataset_id)
    if found is None:
        raise NotFound(f"no dataset {dataset_id!r}; `mlops datasets list` shows the stored ones")
    model = str(found["model"])
    versions = client.search_model_versions(f"name = '{model.replace(chr(39), chr(39) * 2)}'")
    trained = [
        {
            "model": model,
            "version": str(mv.version),
            "state": mv.tags.get("lifecycle_state"),
            "mlflow_run_id": mv.run_id,
            "created": utc_time(mv.creation_timestamp),
        }
        for mv in sorted(versions, key=lambda v: int(v.version))
        if mv.tags.get("dataset_hash") == found["dataset_hash"]
    ]
    return {**dataset_summary(found), "model_versions": trained}
