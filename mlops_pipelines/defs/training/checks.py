"""Governance checks: each model's lifecycle record verified after every promotion gate and every hour."""

import dagster as dg

from mlops_pipelines.catalog.models import load_model_specs
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


def build_lifecycle_check(model: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(f"{model}_promotion"),
        name=f"{model}_lifecycle_consistent",
        pool=WAREHOUSE_POOL,
        blocking=False,
        description=(
            f"The governance record of {model} holds: every audit row verifies against the HMAC chain, every "
            "transition had its preconditions (a PRODUCTION move its approval and compliance sign-off by the "
            "right people), and MLflow's state tags, aliases and recorded hashes agree with the log."
        ),
    )
    def _check(warehouse: WarehouseResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            problems = lifecycle.consistency_problems(model)
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"observed": len(problems), "threshold": 0, "problems": dg.MetadataValue.json(problems)},
        )

    return _check


lifecycle_checks = [build_lifecycle_check(name) for name in load_model_specs()]

governance_check_job = dg.define_asset_job(
    "governance_check_job",
    selection=dg.AssetSelection.checks(*lifecycle_checks),
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
