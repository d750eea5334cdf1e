"""The platform KPIs, one partition a day: written to ``governance.kpis`` and shown as metadata (floats the UI
plots over partitions, and a markdown page). What each KPI means: ``lib/governance/kpis.py``."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_pipelines.catalog.governance import FEATURE_VIEWS_PATH, KPI_PROVIDERS, load_kpi_policy_file
from mlops_pipelines.catalog.policies import policy_status
from mlops_pipelines.defs.common import CATALOG, SPECS
from mlops_pipelines.lib.governance.kpis import (
    ViewFacts,
    collect_version_facts,
    compute_kpis,
    first_commit,
    kpi_markdown,
    write_kpis,
)
from mlops_pipelines.partitions import GOVERNANCE_DAYS, WAREHOUSE_POOL
from mlops_pipelines.resources import MlflowResource, WarehouseResource, open_lifecycle


def _first_materialization(instance: dg.DagsterInstance, view: str) -> datetime | None:
    """When the view's asset was first materialized on this Dagster instance."""
    records = instance.fetch_materializations(dg.AssetKey(["features", view]), limit=1, ascending=True).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


def _kpi_policy_status() -> str:
    try:
        load_kpi_policy_file()
    except Exception as exc:  # any load problem is the status to show; the run fails with the same error
        return f"INVALID: {exc}"
    return "valid"


@dg.asset(
    key=["governance", "kpis"],
    partitions_def=GOVERNANCE_DAYS,
    owners=["team:ml-platform"],
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    metadata={"kpi_policy": _kpi_policy_status(), "promotion_policy": policy_status("promotion")},
    description=(
        "The platform's governance KPIs as of the end of the day (today's partition: as of now): feature-store "
        "adoption (models per view, days from a view's first commit to its first materialization), lifecycle "
        "compliance (manifests, cards, reviews, retraining cadence vs catalog/governance_kpis.yaml), evaluation "
        "coverage (releases with SHAP and backtests), governance quality (approval and review turnaround, policy "
        "violations, overrides). Table governance.kpis; n/a where there is nothing to compute over."
    ),
)
def kpis(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    day_start = datetime.fromtimestamp(window.start.timestamp(), UTC)
    as_of = min(datetime.fromtimestamp(window.end.timestamp(), UTC), datetime.now(UTC))
    views = [
        ViewFacts(
            name=name,
            models=tuple(model for model, spec in SPECS.items() if name in spec.feature_views),
            first_commit=first_commit(FEATURE_VIEWS_PATH, f'name="{name}"'),
            first_materialized=_first_materialization(context.instance, name),
        )
        for name in CATALOG.views
    ]
    with open_lifecycle(warehouse, mlflow) as lifecycle:
        rows = lifecycle.rows()
        facts = collect_version_facts(mlflow.tracking(), lifecycle.records())
        found = compute_kpis(
            rows=rows,
            versions=facts,
            views=views,
            models=list(SPECS),
            policy=load_kpi_policy_file(),
            day_start=day_start,
            day_end=as_of,
            providers=KPI_PROVIDERS,
            provider_rows=lifecycle.rows(every_kind=True),  # the prompt library's rows are its provider's
        )
        write_kpis(lifecycle.conn, context.partition_key, found, as_of)
    metadata: dict[str, dg.RawMetadataValue] = {
        k.name: dg.MetadataValue.float(k.value) for k in found if k.value is not None
    }
    metadata["not_applicable"] = dg.MetadataValue.json([k.name for k in found if k.value is None])
    metadata["as_of"] = as_of.isoformat()
    metadata["first_commit_source"] = (
        "git log of catalog/feature_views.py" if any(v.first_commit for v in views) else "n/a: no git history"
    )
    metadata["kpis"] = dg.MetadataValue.md(kpi_markdown(found, f"Platform KPIs of {context.partition_key}"))
    return dg.MaterializeResult(metadata=metadata)


governance_kpis_job = dg.define_asset_job(
    "governance_kpis_job",
    selection=dg.AssetSelection.assets(kpis),
    partitions_def=GOVERNANCE_DAYS,
    description="The platform KPIs of one day.",
)


@dg.schedule(
    job=governance_kpis_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 00:30 UTC, the KPIs of the day that just ended.",
)
def governance_kpis_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=day, partition_key=day)
