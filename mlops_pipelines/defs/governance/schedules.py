"""Hourly verification of every model's governance record (audit chain, preconditions, MLflow projection)."""

import dagster as dg

from mlops_pipelines.defs.common import SPECS

governance_check_job = dg.define_asset_job(
    "governance_check_job",
    selection=dg.AssetSelection.checks(
        *(dg.AssetCheckKey(dg.AssetKey(f"{model}_promotion"), f"{model}_lifecycle_consistent") for model in SPECS)
    ),
    description="Verify every model's governance record (audit chain, preconditions, MLflow projection).",
)

governance_check_schedule = dg.ScheduleDefinition(
    name="governance_check_schedule",
    job=governance_check_job,
    cron_schedule="35 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly verification of every model's governance record; a failure is an ERROR check result.",
)
