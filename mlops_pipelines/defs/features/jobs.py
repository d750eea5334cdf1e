"""Jobs of the feature stage."""

import dagster as dg

features_job = dg.define_asset_job(
    "features_job",
    selection=dg.AssetSelection.groups("features"),
    description="Recompute every feature view, then the registry and the online store.",
)
