"""Training: build the training sets, train and register every model, evaluate it and apply the promotion gate."""

import dagster as dg

training_job = dg.define_asset_job(
    "training_job",
    # the governance documents (governance/audit_pack, governance/kpis) have their own runs
    selection=dg.AssetSelection.groups("training", "evaluation", "governance")
    - dg.AssetSelection.key_prefixes(["governance"]),
    description=(
        "Build training sets, train and register every model, evaluate it (backtest, SHAP, compliance report) "
        "and apply the promotion gate."
    ),
)
