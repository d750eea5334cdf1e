"""Batch inference: per model, an hourly asset scoring every symbol's decision of the hour with the PRODUCTION
version. The logic is in lib/inference/batch.py; here: resources in, one library call, metadata out."""

from collections.abc import Iterator

import dagster as dg

from mlops_pipelines.defs.common import CATALOG, SPECS
from mlops_pipelines.lib.inference.batch import BATCH_TABLE, NoProductionVersion, run_batch
from mlops_pipelines.lib.monitoring.served_predictions import SERVED_TABLE
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.partitions import MARKET_HOURS, WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle

FEATURE_ASSETS = [dg.AssetKey(["features", name]) for name in CATALOG.views]


def batch_predictions_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=["inference", f"{spec.name}_predictions"],
        deps=[dg.AssetKey(["raw", "market_bars"]), *FEATURE_ASSETS],
        partitions_def=MARKET_HOURS,
        kinds={"duckdb", "lightgbm"},
        pool=WAREHOUSE_POOL,
        output_required=False,
        metadata={"dagster/table_name": BATCH_TABLE},
        description=(
            f"{spec.name}: every symbol's decision of the hour (UTC) scored by the PRODUCTION version, features "
            f"point-in-time as of the decision, into {BATCH_TABLE} and the served prediction log {SERVED_TABLE} (role "
            "`batch`); a re-run replaces the hour. The version is loaded like everywhere else (load_for_inference): "
            "one trained on another feature graph fails the run. No PRODUCTION version: the hour is skipped "
            "(logged, not materialized) and can be re-run once one is promoted."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> Iterator[dg.MaterializeResult]:
        window = context.partition_time_window
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            try:
                run = run_batch(
                    lifecycle,
                    mlflow.tracking(),
                    spec,
                    CATALOG,
                    partition_key=context.partition_key,
                    start=window.start,
                    end=window.end,
                    run_id=context.run_id,
                )
            except NoProductionVersion as exc:
                context.log.warning(str(exc))
                return
        for _, row in run.unscored.iterrows():
            context.log.warning(f"{spec.name}: {row['symbol']} at {row['event_timestamp']} not scored: {row['reason']}")
        preview = run.scored.head(10).to_markdown(index=False, floatfmt=".4f") if len(run.scored) else "no decision"
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(run.scored),
                "version": run.version,
                "feature_graph_hash": run.feature_graph_hash,
                "unscored": len(run.unscored),
                "unscored_symbols": ", ".join(sorted(run.unscored["symbol"].astype(str))) or "-",
                "decisions_from": str(window.start),
                "decisions_to": str(window.end),
                "preview": dg.MetadataValue.md(preview),
                "table": BATCH_TABLE,
            }
        )

    return predictions


batch_predictions = [batch_predictions_asset(spec) for spec in SPECS.values()]
