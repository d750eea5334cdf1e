"""Raw market bars: validated per daily partition, rejected rows kept in quarantine with their reasons."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_pipelines.defs.common import CATALOG
from mlops_pipelines.lib.core.errors import ConfigError
from mlops_pipelines.lib.ingestion.ingest import IngestionOutcome, alert_unreadable, ingest_window
from mlops_pipelines.lib.ingestion.market_bars import BARS_TABLE, QUARANTINE_TABLE
from mlops_pipelines.lib.ingestion.raw_folder import QUARANTINED_FILES_TABLE
from mlops_pipelines.lib.ingestion.revisions import REVISIONS_TABLE
from mlops_pipelines.partitions import MARKET_DAYS, WAREHOUSE_POOL
from mlops_pipelines.resources import AlertsResource, MarketDataSource, WarehouseResource

BARS_KEY = dg.AssetKey(["raw", "market_bars"])
QUARANTINE_KEY = dg.AssetKey(["raw", "quarantined_bars"])


class IngestionConfig(dg.Config):
    max_quarantine_ratio: float = Field(
        default=0.05, description="Share of rejected rows above which the blocking quarantine check fails."
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BARS_KEY,
            description=(
                f"OHLCV bars per symbol (UTC) of the declared length ({CATALOG.bar_clock}; MLOPS_BAR_INTERVAL), "
                "one daily partition per day. Only rows that passed validation; re-materializing a day replaces "
                "it. A bar that comes back with other values is a revision: available from its arrival time, "
                f"the version it replaces kept in {REVISIONS_TABLE}."
            ),
            kinds={"duckdb", "pandas"},
            metadata={"dagster/table_name": BARS_TABLE},
        ),
        dg.AssetSpec(
            QUARANTINE_KEY,
            description=(
                "Rows the validation rejected, as they arrived (text), with source file, row and reason. "
                "Nothing is dropped silently: inspect here, fix the source, re-materialize the day. Rows that "
                "belong to no day (unparseable, before the first partition, in the future) are under partition "
                "key __unparseable__ or __outside_partitions__; files that cannot be read at all, or whose bars are "
                f"of another frequency than declared, are listed in {QUARANTINED_FILES_TABLE}."
            ),
            kinds={"duckdb"},
            metadata={"dagster/table_name": QUARANTINE_TABLE},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "market_bars_quarantine_ratio",
            asset=BARS_KEY,
            blocking=True,
            description="Share of rows rejected in the materialized days stays under the configured threshold.",
        )
    ],
    partitions_def=MARKET_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    can_subset=False,
)
def market_bars(
    context: dg.AssetExecutionContext,
    config: IngestionConfig,
    market_data: MarketDataSource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
):
    """Load the source for the partition window, validate every row, write accepted and quarantined rows."""
    clock = market_data.clock()
    if clock != CATALOG.bar_clock:
        raise ConfigError(
            f"the market data source declares {clock} but the feature catalog was loaded for {CATALOG.bar_clock}: "
            "set MLOPS_BAR_INTERVAL and MLOPS_MARKET_CALENDAR once, for the code location and its runs"
        )
    window, now = context.partition_time_window, datetime.now(UTC)
    batch = market_data.load(window.start, window.end, first_bar=MARKET_DAYS.start, now=now)
    outcome = ingest_window(
        batch,
        warehouse.connect,
        start=window.start,
        end=window.end,
        partition_keys=context.partition_keys,
        first_bar=MARKET_DAYS.start,
        now=now,
        run_id=context.run_id,
        bar_interval=clock.interval,
        universe=market_data.universe(),
        max_clock_skew=market_data.max_clock_skew,
        list_unreadable_files=market_data.kind == "folder",
    )
    for entry in outcome.unreadable:
        context.log.error(f"file quarantined, not ingested: {entry.error}")
    if outcome.unreadable:
        alert_unreadable(alerts.alerter(), outcome.unreadable, run_id=context.run_id)
    if outcome.before_first_partition:
        context.log.warning(outcome.before_first_partition)
    context.log.info(f"{window.start:%Y-%m-%d}..{window.end:%Y-%m-%d}: {outcome.summary()}")
    days = len(context.partition_keys)
    yield dg.MaterializeResult(asset_key=BARS_KEY, metadata=_bars_metadata(outcome, days))
    yield dg.MaterializeResult(asset_key=QUARANTINE_KEY, metadata=_quarantine_metadata(outcome, days))
    yield dg.AssetCheckResult(
        check_name="market_bars_quarantine_ratio",
        asset_key=BARS_KEY,
        passed=outcome.quarantine_ratio <= config.max_quarantine_ratio,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "observed": outcome.quarantine_ratio,
            "threshold": config.max_quarantine_ratio,
            "quarantined_rows": len(outcome.quarantined),
            "accepted_rows": len(outcome.accepted),
            "unreadable_files": len(outcome.unreadable),
        },
    )


# A multi-day run reports one materialization per day with the same metadata: the run's totals (no row count).


def _bars_metadata(outcome: IngestionOutcome, days: int) -> dict[str, Any]:
    accepted = outcome.accepted
    return {
        **({"dagster/row_count": len(accepted)} if days == 1 else {}),
        "rows_in_run": len(accepted),
        "days_in_run": days,
        "revised_bars": outcome.revised,  # stored bars whose values changed: stamped with their arrival
        "withdrawn_bars": outcome.withdrawn,  # stored bars the source no longer has
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype) for name, dtype in outcome.schema.items()]
        ),
        "symbols": int(accepted["symbol"].nunique()),
        "first_bar": str(accepted["timestamp"].min()) if len(accepted) else "none",
        "last_bar": str(accepted["timestamp"].max()) if len(accepted) else "none",
        "source_files": dg.MetadataValue.json(outcome.files_read[:50]),
        "preview": dg.MetadataValue.md(_preview(accepted)),
    }


def _quarantine_metadata(outcome: IngestionOutcome, days: int) -> dict[str, Any]:
    reasons = outcome.reasons
    return {
        **({"dagster/row_count": len(outcome.quarantined)} if days == 1 else {}),
        "rows_in_run": len(outcome.quarantined),
        "quarantine_ratio": outcome.quarantine_ratio,
        "unreadable_files": len(outcome.unreadable),  # listed in raw.quarantined_files, alerted once per content
        "before_first_partition": outcome.before_first_partition or "none",
        "reasons": dg.MetadataValue.md(
            "| reason | rows |\n|---|---|\n" + "\n".join(f"| {r} | {n} |" for r, n in reasons.most_common())
            if reasons
            else "no rows rejected"
        ),
        "preview": dg.MetadataValue.md(_preview(outcome.quarantined)),
    }


def _preview(frame: pd.DataFrame, rows: int = 10) -> str:
    return frame.head(rows).to_markdown(index=False) if len(frame) else "(no rows)"
