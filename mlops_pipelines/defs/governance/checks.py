"""Governance checks: each model's lifecycle record verified after every promotion gate and every hour."""

import dagster as dg

from mlops_pipelines.defs.common import SPECS
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


lifecycle_checks = [build_lifecycle_check(name) for name in SPECS]
