"""Partitions and concurrency pools shared by the Dagster definitions (kept outside ``defs/``)."""

import dagster as dg

from mlops_pipelines.defs.resources import SETTINGS

# Every asset that writes (or reads) the DuckDB warehouse runs in this pool; dagster.yaml limits it to 1.
WAREHOUSE_POOL = "warehouse"

MARKET_DAYS = dg.DailyPartitionsDefinition(start_date=SETTINGS.market_start, timezone="UTC")

MARKET_HOURS = dg.HourlyPartitionsDefinition(start_date=f"{SETTINGS.market_start}-00:00", timezone="UTC")

# The governance KPIs' days (UTC): like MARKET_DAYS, plus today's partition (end_offset=1), computed as of now
# while the day runs, because the audit log records wall-clock times.
GOVERNANCE_DAYS = dg.DailyPartitionsDefinition(start_date=SETTINGS.market_start, timezone="UTC", end_offset=1)
