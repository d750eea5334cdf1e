"""The prompt library's job: every asset of the group ``prompts`` (registration, and what builds on it)."""

import dagster as dg

prompts_job = dg.define_asset_job(
    "prompts_job",
    selection=dg.AssetSelection.groups("prompts"),
    description="Registers the library's prompt versions in MLflow's prompt registry (DRAFT, once each) and renders "
    "their prompt cards; with the evaluation assets of the group, evaluates them too.",
)
