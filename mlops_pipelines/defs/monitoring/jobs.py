"""The hourly drift job."""

import dagster as dg

from mlops_pipelines.partitions import MARKET_HOURS

drift_job = dg.define_asset_job(
    "drift_job",
    selection=dg.AssetSelection.groups("monitoring"),
    partitions_def=MARKET_HOURS,
    description="Feature drift, prediction drift and realized performance of every deployed model for one hour "
    "(UTC), then monitoring/model_health (each model's latest verdicts, plotted over runs).",
)
