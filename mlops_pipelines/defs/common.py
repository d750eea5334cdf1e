"""What the stage folders share: the catalogs as loaded once per code location, the pipeline's identity, and the
answer to "which version did this run train?"."""

import dagster as dg

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.defs.resources import SETTINGS
from mlops_pipelines.lib.core.errors import NotFound

CATALOG = load_catalog(SETTINGS.bar_clock)  # built for the deployment's bars (MLOPS_BAR_INTERVAL, ...)
SPECS = load_model_specs()
PIPELINE_ACTOR = "pipeline:dagster"  # who the audit log records for what the pipeline does on its own
# Run tags the training-set assets read (the training job's launch tags; the retraining sensor sets the cutoff to
# the end of the drift window that triggered it): ISO 8601 UTC time, and a number of days.
TRAINING_CUTOFF_TAG = "training_cutoff"
MIN_HISTORY_TAG = "training_min_history_days"


def trained_version(context: dg.AssetExecutionContext, model: str) -> str:
    """The version ``<model>`` registered in this run (or in the run it re-executes), else in its latest
    materialization.

    Evaluation and the promotion gate act on this version, never on "the newest registered": when a retraining
    run and a manual training interleave, each run evaluates and gates the version it trained itself.
    """
    key, instance = dg.AssetKey(model), context.instance
    run: dg.DagsterRun | None = context.run
    while run is not None:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
        ).records
        for record in records:
            materialization = record.event_log_entry.asset_materialization
            if materialization is not None and materialization.asset_key == key:
                return str(materialization.metadata["model_version"].value)
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    latest = instance.get_latest_materialization_event(key)
    if latest is None or latest.asset_materialization is None:
        raise NotFound(f"{model} has never been materialized: train it first")
    return str(latest.asset_materialization.metadata["model_version"].value)
