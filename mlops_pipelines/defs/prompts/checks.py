"""Each prompt's governance record verified after every registration (as the models' lifecycle checks are)."""

import dagster as dg

from mlops_pipelines.catalog.prompt_library import load_prompts
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


def prompt_lifecycle_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["prompts", f"{name}_registration"]),
        name=f"{name}_lifecycle_consistent",
        pool=WAREHOUSE_POOL,
        blocking=False,
        description=(
            f"The governance record of prompt {name} holds: every audit row verifies against the HMAC chain, every "
            "transition had its preconditions (STAGING a passing evaluation or an audited override, PRODUCTION an "
            "approval by someone other than the author and the requester), MLflow's prompt registry agrees with "
            "the log (states, aliases, audit head) and each version's content hashes to what was registered."
        ),
    )
    def _check(warehouse: WarehouseResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
        with open_lifecycle(warehouse, mlflow, kind=PromptLifecycle, read_only=True) as lifecycle:
            problems = lifecycle.consistency_problems(name)
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"observed": len(problems), "threshold": 0, "problems": dg.MetadataValue.json(problems)},
        )

    return _check


prompt_lifecycle_checks = [prompt_lifecycle_check(name) for name in load_prompts()]
