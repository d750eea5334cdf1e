"""The audit pack as an asset: the same folder ``mlops governance audit-pack`` writes, for the period its run
config names, in the ``governance`` resource's folder (``$MLOPS_DATA_DIR/governance/audit_packs/``)."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_pipelines.catalog.governance import AUDIT_PACK_SECTIONS, POLICY_SOURCES
from mlops_pipelines.lib.governance.audit_pack import OK, Period, build_audit_pack, parse_bound
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import (
    AlertsResource,
    GovernanceResource,
    MlflowResource,
    WarehouseResource,
    open_lifecycle,
)


class AuditPackPeriod(dg.Config):
    since: str = Field(default="", description="Start (ISO 8601 date or time, UTC); empty: from the first row.")
    until: str = Field(default="", description="End, excluded (ISO 8601 date or time, UTC); empty: now.")


@dg.asset(
    key=["governance", "audit_pack"],
    owners=["team:ml-platform"],
    kinds={"duckdb", "mlflow"},
    pool=WAREHOUSE_POOL,
    description=(
        "The audit pack of a period (run config since / until, default everything): the model versions promoted or "
        "retired with their model cards and compliance reports, the policies in force with their git history, the "
        "audit log with its hash-chain verification (OK / FAILED), deployments with their checklists and the drift "
        "alerts raised, as one folder whose index.html opens without any of our tools."
    ),
)
def audit_pack(
    context: dg.AssetExecutionContext,
    config: AuditPackPeriod,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
    alerts: AlertsResource,
    governance: GovernanceResource,
) -> dg.MaterializeResult:
    period = Period(since=parse_bound("config since", config.since), until=parse_bound("config until", config.until))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(governance.audit_packs_dir) / f"{stamp}_{context.run_id[:8]}"
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        result = build_audit_pack(
            out,
            lifecycle=lifecycle,
            tracking=mlflow.tracking(),
            period=period,
            policies=POLICY_SOURCES,
            alerts_file=alerts.jsonl_path(),
            sections=AUDIT_PACK_SECTIONS,
        )
    if result.verification != OK:
        context.log.error(f"audit log verification FAILED: {'; '.join(result.problems)}")
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.path(str(result.path / "index.html")),
            "period": period.describe(),
            "audit_log_verification": result.verification,
            "problems": dg.MetadataValue.json(result.problems),
            "versions_promoted_or_retired": result.versions,
            "deployments": result.deployments,
            "drift_alerts_and_verdicts": result.alerts,
            "files": result.files,
            "pack": dg.MetadataValue.md((result.path / "index.md").read_text()),
        }
    )
