"""Checks on the stored raw bars (the quarantine-ratio check runs inside the ingestion step itself)."""

import dagster as dg

from mlops_pipelines.lib.ingestion.market_bars import duplicate_bars
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import WarehouseResource


@dg.asset_check(
    asset=dg.AssetKey(["raw", "market_bars"]),
    name="market_bars_unique_bars",
    description="At most one stored bar per (symbol, timestamp) across all days: re-runs never duplicate.",
    pool=WAREHOUSE_POOL,
)
def market_bars_unique_bars(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        duplicates, total = duplicate_bars(conn)
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"observed": duplicates, "threshold": 0, "rows": total})
