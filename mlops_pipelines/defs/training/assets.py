"""Training sets and training runs (MLflow + registry), one pair of assets per model spec."""

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial

import dagster as dg

from mlops_pipelines.defs.common import CATALOG, MIN_HISTORY_TAG, PIPELINE_ACTOR, SPECS, TRAINING_CUTOFF_TAG
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.core.plots import png_markdown
from mlops_pipelines.lib.training import datasets
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.lib.training.training_run import train_and_register
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import (
    MlflowResource,
    WarehouseResource,
    fail_training_runs_of_dead_dagster_runs,
    open_lifecycle,
)

DEFAULT_MIN_HISTORY_DAYS = 7.0  # a model is not fitted to less than a week of one market


def training_window(tags: Mapping[str, str]) -> datasets.TrainingWindow:
    """The training window a run's tags ask for: ``training_cutoff`` (ISO 8601; without an offset, UTC; absent:
    every bar ingested) and ``training_min_history_days`` (default ``DEFAULT_MIN_HISTORY_DAYS``)."""
    raw_cutoff, raw_days = tags.get(TRAINING_CUTOFF_TAG, "").strip(), tags.get(MIN_HISTORY_TAG, "").strip()
    try:
        cutoff = datetime.fromisoformat(raw_cutoff.replace("Z", "+00:00")) if raw_cutoff else None
    except ValueError as exc:
        raise ConfigError(f"run tag {TRAINING_CUTOFF_TAG}={raw_cutoff!r} is not an ISO 8601 time: {exc}") from exc
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    try:
        days = float(raw_days) if raw_days else DEFAULT_MIN_HISTORY_DAYS
    except ValueError:
        raise ConfigError(f"run tag {MIN_HISTORY_TAG}={raw_days!r} is not a number of days") from None
    if not days >= 0:
        raise ConfigError(f"run tag {MIN_HISTORY_TAG}={raw_days!r} must be a number of days >= 0")
    return datasets.TrainingWindow(cutoff=cutoff, min_history_days=days)


def dataset_key(spec: ModelSpec) -> dg.AssetKey:
    return dg.AssetKey(["training", f"{spec.name}_dataset"])


def build_dataset_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=dataset_key(spec),
        deps=[dg.AssetKey(["raw", "market_bars"]), *(dg.AssetKey(["features", v]) for v in spec.feature_views)],
        owners=[spec.owner],
        kinds={"duckdb", "pandas"},
        pool=WAREHOUSE_POOL,
        description=(
            f"Point-in-time training set of {spec.name}: label `{spec.label.kind}` over {spec.label.horizon_bars} bars "
            f"({CATALOG.bar_clock}), "
            f"features of {', '.join(f'{k}@{v}' for k, v in spec.feature_views.items())} as of each decision, "
            "time-ordered train/validation/test with purged boundaries. Table "
            f"{datasets.latest_table(spec.name)}; every version kept as training.dataset_<id>. Run tags: "
            f"`{TRAINING_CUTOFF_TAG}` (only labels known by then; default every bar ingested), `{MIN_HISTORY_TAG}` "
            f"(refused below it; default {DEFAULT_MIN_HISTORY_DAYS:g})."
        ),
    )
    def _dataset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        window = training_window(context.run.tags)
        with warehouse.connect() as conn:
            data = datasets.build_training_set(conn, spec, CATALOG, window)
            dataset_id = datasets.store_training_set(conn, spec, data, run_id=context.run_id)
        frame = data.frame
        counts = frame["split"].value_counts()
        return dg.MaterializeResult(
            metadata={
                "dataset_hash": data.dataset_hash,
                "dataset_id": dataset_id,
                "dagster/row_count": len(frame),
                "dagster/table_name": datasets.latest_table(spec.name),
                **{f"{split}_rows": int(counts.get(split, 0)) for split in datasets.SPLITS},
                "label_mean": float(frame["label"].mean()),
                "first_decision": str(frame["event_timestamp"].min()),
                "last_decision": str(frame["event_timestamp"].max()),
                "training_cutoff": str(data.cutoff),
                "min_history_days": data.window.min_history_days,
                "features": dg.MetadataValue.json(data.features),
            }
        )

    return _dataset


def build_model_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=spec.name,
        deps=[dataset_key(spec)],
        owners=[spec.owner],
        kinds={"lightgbm", "mlflow"},
        pool=WAREHOUSE_POOL,
        description=(
            f"{' '.join(spec.description.split())} One MLflow run per materialization (params, metrics, the "
            "LightGBM model in its native format, manifest.json, model card, feature importance) and a new "
            "registered model version in state TRAINED."
        ),
    )
    def _model(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        # a killed earlier training of this model never ended its MLflow run: end it FAILED first
        stale = fail_training_runs_of_dead_dagster_runs(
            mlflow, context.instance, [spec.name], found_by=f"found by the next materialization of {spec.name}"
        )
        if stale:
            context.log.warning(f"MLflow runs of dead Dagster runs marked FAILED: {', '.join(stale)}")
        tracking = mlflow.tracking()
        with warehouse.connect() as conn:
            data = datasets.load_training_set(conn, spec)
        outcome = train_and_register(
            spec,
            data,
            CATALOG,
            tracking,
            partial(open_lifecycle, warehouse, mlflow),
            actor=PIPELINE_ACTOR,
            dagster_run_id=context.run_id,
            asset_key=spec.name,
        )
        run = tracking.client().get_run(outcome.run_id)
        return dg.MaterializeResult(
            metadata={
                **{name: float(value) for name, value in outcome.model.metrics.items()},
                "model_name": spec.name,
                "model_version": outcome.version,
                "mlflow_run_id": outcome.run_id,
                "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run.info.experiment_id, outcome.run_id)),
                "dataset_hash": data.dataset_hash,
                "feature_graph_hash": outcome.manifest["feature_graph_hash"],
                "artifact_sha256": outcome.manifest["artifact_sha256"],
                "feature_importance": dg.MetadataValue.md(png_markdown(outcome.importance_png, "feature importance")),
                "model_card": dg.MetadataValue.md(outcome.model_card),
            }
        )

    return _model


training_assets = [build(spec) for spec in SPECS.values() for build in (build_dataset_asset, build_model_asset)]
