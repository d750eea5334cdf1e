"""Jobs of the ingestion stage."""

import dagster as dg

from mlops_pipelines.partitions import MARKET_DAYS

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("ingestion"),
    partitions_def=MARKET_DAYS,
    description="Ingest and validate raw bars for one or more days (a range runs as one run).",
)
