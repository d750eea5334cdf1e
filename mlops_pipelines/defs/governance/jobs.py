"""The operator jobs of the model lifecycle (launchable from the UI launchpad with typed config). The ``actor``
field is self-declared, as the CLI's ``--actor``."""

import dagster as dg
from pydantic import Field

from mlops_pipelines.defs.common import SPECS
from mlops_pipelines.lib.governance import compliance
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


class LifecycleRequest(dg.Config):
    model: str = Field(description="Registered model name, e.g. direction_classifier.")
    actor: str = Field(description="Who performs this action (recorded in the audit log).")
    reason: str = Field(default="", description="Why; recorded in the audit log.")


class VersionRequest(LifecycleRequest):
    version: str = Field(description="Model version number.")


class ReviewDecision(VersionRequest):
    approve: bool = Field(description="true: APPROVED, false: REJECTED.")


@dg.op(pool=WAREHOUSE_POOL)
def approve_model(
    context: dg.OpExecutionContext, config: VersionRequest, warehouse: WarehouseResource, mlflow: MlflowResource
) -> None:
    """Record an approval of a STAGING version (the approver must not be its trainer)."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        lifecycle.approve(config.model, config.version, approver=config.actor, comment=config.reason)
    context.log.info(f"{config.actor} approved {config.model} v{config.version}")


@dg.op(pool=WAREHOUSE_POOL)
def review_model(
    context: dg.OpExecutionContext, config: ReviewDecision, warehouse: WarehouseResource, mlflow: MlflowResource
) -> None:
    """Sign off (or reject) the pending compliance review of a version; the reviewer must not be its trainer.
    The report in MLflow then shows the decision, and the compliance-report asset gets an observation with it."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        status, lagging = compliance.decide_review(
            lifecycle,
            mlflow.tracking(),
            config.model,
            config.version,
            approve=config.approve,
            reviewer=config.actor,
            comment=config.reason,
        )
    if lagging:  # the decision stands: the audit log is the record
        context.log.warning(lagging)
    context.log.info(f"{config.actor}: compliance review of {config.model} v{config.version} -> {status}")
    if config.model in SPECS:
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey(f"{config.model}_compliance_report"),
                metadata={"model_version": config.version, "review_status": status.value, "reviewer": config.actor},
            )
        )


@dg.op(pool=WAREHOUSE_POOL)
def promote_model(
    context: dg.OpExecutionContext, config: VersionRequest, warehouse: WarehouseResource, mlflow: MlflowResource
) -> None:
    """STAGING -> PRODUCTION (needs a four-eyes approval); the previous production version steps back."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        previous = lifecycle.promote_to_production(
            config.model, config.version, actor=config.actor, reason=config.reason or "promoted by operator"
        )
    context.log.info(f"{config.model} v{config.version} is in PRODUCTION (previous: {previous})")


@dg.op(pool=WAREHOUSE_POOL)
def rollback_model(
    context: dg.OpExecutionContext, config: LifecycleRequest, warehouse: WarehouseResource, mlflow: MlflowResource
) -> None:
    """Put the previous production version back."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        restored = lifecycle.rollback(config.model, actor=config.actor, reason=config.reason or "rollback by operator")
    context.log.info(f"{config.model}: v{restored} restored to PRODUCTION")


@dg.op(pool=WAREHOUSE_POOL)
def retire_model(
    context: dg.OpExecutionContext, config: VersionRequest, warehouse: WarehouseResource, mlflow: MlflowResource
) -> None:
    """PRODUCTION -> RETIRED; every artifact is kept."""
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        lifecycle.retire(
            config.model, config.version, actor=config.actor, reason=config.reason or "retired by operator"
        )
    context.log.info(f"{config.model} v{config.version} retired")


@dg.job(description="Approve a STAGING model version (four-eyes: not its trainer).")
def approve_model_job() -> None:
    approve_model()


@dg.job(description="Approve or reject the compliance review of a model version (reviewer: not its trainer).")
def review_model_job() -> None:
    review_model()


@dg.job(description="Promote an approved STAGING version to PRODUCTION.")
def promote_model_job() -> None:
    promote_model()


@dg.job(description="Roll a model back to its previous PRODUCTION version.")
def rollback_model_job() -> None:
    rollback_model()


@dg.job(description="Retire a PRODUCTION version (artifacts are kept).")
def retire_model_job() -> None:
    retire_model()
