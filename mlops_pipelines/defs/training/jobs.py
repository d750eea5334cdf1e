"""Training: build the training sets, train and register every model, evaluate it and apply the promotion gate."""

import dagster as dg

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("training", "evaluation", "governance"),
    description=(
        "Build training sets, train and register every model, evaluate it (backtest, SHAP, compliance report) "
        "and apply the promotion gate."
    ),
)
