"""The hourly batch inference job."""

import dagster as dg

from mlops_pipelines.partitions import MARKET_HOURS

inference_job = dg.define_asset_job(
    "inference_job",
    selection=dg.AssetSelection.groups("inference"),
    partitions_def=MARKET_HOURS,
    description="Every model's PRODUCTION version scores every symbol's decision of one hour (UTC), point-in-time; "
    "into inference.batch_predictions and the served prediction log (role batch).",
)
