"""The promotion gate of each model: policy thresholds in YAML, applied to the version its run trained."""

import dagster as dg

from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy, policy_status
from mlops_pipelines.defs.common import CATALOG, PIPELINE_ACTOR, SPECS, trained_version
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.lib.governance.gate import run_gate
from mlops_pipelines.lib.training.model_specs import ModelSpec
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle

# Checked once when the code location loads; shown on each promotion asset (docs/reliability.md).
POLICY_METADATA = {"promotion_policy": policy_status("promotion"), "drift_policy": policy_status("drift")}


def build_promotion_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=f"{spec.name}_promotion",
        deps=[dg.AssetKey(f"{spec.name}_compliance_report")],
        owners=[spec.owner],
        kinds={"mlflow"},
        metadata=POLICY_METADATA,
        pool=WAREHOUSE_POOL,
        description=(
            f"The promotion gate of {spec.name}: the held-out metrics and holdout backtest of the version this "
            "run trained against catalog/promotion_policy.yaml. Pass: TRAINED -> VALIDATED -> STAGING (awaiting "
            "a compliance sign-off and a four-eyes approval for PRODUCTION). Fail: stays TRAINED, with the failed "
            "thresholds in the audit log."
        ),
    )
    def _promotion(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        version = trained_version(context, spec.name)
        with open_lifecycle(warehouse, mlflow) as lifecycle:
            result, state = run_gate(
                lifecycle,
                spec.name,
                version,
                actor=PIPELINE_ACTOR,
                spec=spec,
                catalog=CATALOG,
                promotion_policy=load_promotion_policy(),
                drift_policy=load_drift_policy_file(),
            )
        context.log.info(f"{spec.name} v{version}: policy {'passed' if result.passed else 'failed'} -> {state}")
        return dg.MaterializeResult(
            metadata={
                "model_version": version,
                "lifecycle_state": state,
                "policy_passed": result.passed,
                "policy_hash": result.policy_hash,
                "policy_evaluation": dg.MetadataValue.md(compliance.policy_markdown(result)),
            }
        )

    return _promotion


promotion_assets = [build_promotion_asset(spec) for spec in SPECS.values()]
