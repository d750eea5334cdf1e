"""Raw market bars: validated per daily partition, rejected rows kept in quarantine with their reasons."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_pipelines.lib.core.alerts import Alert
from mlops_pipelines.lib.core.warehouse import replace_rows, table_schema, transaction
from mlops_pipelines.lib.ingestion.raw_folder import QUARANTINED_FILES_TABLE, record_unreadable
from mlops_pipelines.lib.ingestion.revisions import REVISIONS_DDL, REVISIONS_TABLE, reconcile
from mlops_pipelines.lib.ingestion.validation import NO_PARTITION, QUARANTINE_COLUMNS, reason_counts, validate_bars
from mlops_pipelines.partitions import MARKET_DAYS, WAREHOUSE_POOL
from mlops_pipelines.resources import AlertsResource, MarketDataSource, WarehouseResource

BARS_TABLE = "raw.market_bars"
QUARANTINE_TABLE = "raw.quarantined_bars"
BARS_DDL = """
    symbol VARCHAR NOT NULL, sector VARCHAR, "timestamp" TIMESTAMP WITH TIME ZONE NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    available_at TIMESTAMP WITH TIME ZONE NOT NULL, source_file VARCHAR
"""
QUARANTINE_DDL = """
    partition_key VARCHAR, source_file VARCHAR, source_row BIGINT, reason VARCHAR, symbol VARCHAR,
    "timestamp" VARCHAR, open VARCHAR, high VARCHAR, low VARCHAR, close VARCHAR, volume VARCHAR,
    quarantined_at TIMESTAMP WITH TIME ZONE
"""
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
                "Hourly OHLCV bars per symbol (UTC), one daily partition per day. Only rows that passed "
                "validation; re-materializing a day replaces it. A bar that comes back with other values is a "
                "revision: available from its arrival time, the version it replaces kept in "
                "raw.market_bar_revisions."
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
                "key __unparseable__ or __outside_partitions__; files that cannot be read at all are listed in "
                f"{QUARANTINED_FILES_TABLE}."
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
    window = context.partition_time_window
    now = datetime.now(UTC)
    first_bar = MARKET_DAYS.start
    batch = market_data.load(window.start, window.end, first_bar=first_bar, now=now)
    result = validate_bars(
        batch.bars,
        now=now,
        universe=market_data.universe(),
        first_bar=first_bar,
        max_clock_skew=market_data.max_clock_skew,
    )
    accepted, quarantined = result.accepted, result.quarantined
    unreadable = batch.unreadable

    in_window = '"timestamp" >= ? AND "timestamp" < ?'
    with warehouse.connect() as conn:
        with transaction(conn):  # bars, revisions and quarantined rows of the days: all replaced, or none
            conn.execute(f"CREATE TABLE IF NOT EXISTS {BARS_TABLE} ({BARS_DDL})")
            stored = conn.execute(f"SELECT * FROM {BARS_TABLE} WHERE {in_window}", [window.start, window.end]).fetchdf()
            reconciled = reconcile(stored, accepted, now=now, unreadable_files=[e.path for e in unreadable])
            replace_rows(
                conn,
                BARS_TABLE,
                reconciled.bars,
                where=in_window,
                params=[window.start, window.end],
                own_transaction=False,
            )
            replace_rows(
                conn,
                REVISIONS_TABLE,
                reconciled.superseded,
                where="false",  # append: every superseded version is kept
                create_sql=REVISIONS_DDL,
                own_transaction=False,
            )
            replace_rows(
                conn,
                QUARANTINE_TABLE,
                quarantined[list(QUARANTINE_COLUMNS)],
                # the days' rows, and the partition-less rows of the files this run read
                where="partition_key IN (SELECT unnest(?)) "
                "OR (partition_key IN (SELECT unnest(?)) AND source_file IN (SELECT unnest(?)))",
                params=[list(context.partition_keys), list(NO_PARTITION), batch.files_read],
                create_sql=QUARANTINE_DDL,
                own_transaction=False,
            )
            if market_data.kind == "folder":
                record_unreadable(conn, unreadable, run_id=context.run_id, now=now)
        schema = table_schema(conn, BARS_TABLE)

    if unreadable:
        alerter = alerts.alerter()
        for entry in unreadable:  # alerted once per file content: the alerter deduplicates on (path, sha256)
            context.log.error(f"file quarantined, not ingested: {entry.error}")
            alerter.raise_alert(
                Alert(
                    kind="file_quarantined",
                    subject=entry.path,
                    episode=entry.sha256,
                    summary=str(entry.error),
                    details={"size": entry.size, "sha256": entry.sha256, "run_id": context.run_id},
                )
            )

    reasons = reason_counts(quarantined["reason"])
    ratio = result.quarantine_ratio
    context.log.info(
        f"{len(accepted)} bars accepted, {len(quarantined)} quarantined ({ratio:.3%}) for {window.start:%Y-%m-%d}"
        f"..{window.end:%Y-%m-%d}; {reconciled.revised} revised, {reconciled.withdrawn} withdrawn"
    )
    # A multi-day run reports one materialization per day with the same metadata: the run's totals.
    single_day = len(context.partition_keys) == 1
    yield dg.MaterializeResult(
        asset_key=BARS_KEY,
        metadata={
            **({"dagster/row_count": len(accepted)} if single_day else {}),
            "rows_in_run": len(accepted),
            "days_in_run": len(context.partition_keys),
            "revised_bars": reconciled.revised,  # stored bars whose values changed: stamped with their arrival
            "withdrawn_bars": reconciled.withdrawn,  # stored bars the source no longer has
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, dtype) for name, dtype in schema.items()]
            ),
            "symbols": int(accepted["symbol"].nunique()),
            "first_bar": str(accepted["timestamp"].min()) if len(accepted) else "none",
            "last_bar": str(accepted["timestamp"].max()) if len(accepted) else "none",
            "source_files": dg.MetadataValue.json(batch.files_read[:50]),
            "preview": dg.MetadataValue.md(_preview(accepted)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            **({"dagster/row_count": len(quarantined)} if single_day else {}),
            "rows_in_run": len(quarantined),
            "quarantine_ratio": ratio,
            "unreadable_files": len(unreadable),  # listed in raw.quarantined_files, alerted once per content
            "reasons": dg.MetadataValue.md(
                "| reason | rows |\n|---|---|\n" + "\n".join(f"| {r} | {n} |" for r, n in reasons.most_common())
                if reasons
                else "no rows rejected"
            ),
            "preview": dg.MetadataValue.md(_preview(quarantined)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="market_bars_quarantine_ratio",
        asset_key=BARS_KEY,
        passed=ratio <= config.max_quarantine_ratio,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "observed": ratio,
            "threshold": config.max_quarantine_ratio,
            "quarantined_rows": len(quarantined),
            "accepted_rows": len(accepted),
            "unreadable_files": len(unreadable),
        },
    )


def _preview(frame: pd.DataFrame, rows: int = 10) -> str:
    return frame.head(rows).to_markdown(index=False) if len(frame) else "(no rows)"
