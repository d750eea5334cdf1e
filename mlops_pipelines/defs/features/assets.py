"""Feature views (one asset per view, generated from the catalog), the registry, and the online store."""

import dagster as dg

from mlops_pipelines.defs.common import CATALOG
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.resources import OnlineStoreResource, WarehouseResource


def view_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["features", name])


def dependency_key(dep: str) -> dg.AssetKey:
    return dg.AssetKey(dep.split(".")) if "." in dep else view_key(dep)


def column_schema(schema: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in schema.items()])


def schema_check_name(view: FeatureView) -> str:
    return f"{view.name}_declared_schema"


def build_view_asset(catalog: FeatureCatalog, view: FeatureView) -> dg.AssetsDefinition:
    @dg.asset(
        key=view_key(view.name),
        name=None,
        deps=[dependency_key(d) for d in view.depends_on],
        description=(
            f"{' '.join(view.description.split())}\n\nFeature view `{view.name}` v{view.version} "
            f"-> table `{view.table}`; entity {', '.join(view.entities)}; TTL {view.ttl}."
        ),
        owners=[view.owner],
        kinds={"duckdb", "sql"},
        tags={**view.tags, "feature_view_version": str(view.version)},
        metadata={
            "dagster/table_name": view.table,
            "dagster/column_schema": column_schema(view.schema_),
            "feature_view_version": view.version,
        },
        check_specs=[
            dg.AssetCheckSpec(
                schema_check_name(view),
                asset=view_key(view.name),
                blocking=True,
                description=f"{view.table} has exactly the declared columns and types, in order.",
            )
        ],
        pool=WAREHOUSE_POOL,
        automation_condition=dg.AutomationCondition.eager(),
    )
    def _view(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as conn:
            stats = feature_store.materialize_view(conn, catalog, view.name)
            problems = feature_store.check_view_schema(conn, view)
            preview = feature_store.preview(conn, view, rows=5)
            nulls = feature_store.null_shares(conn, view)
        context.log.info(f"{view.table}: {stats.row_count} rows")
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.row_count,
                "dagster/table_name": view.table,
                "dagster/column_schema": column_schema(stats.schema),
                "feature_view_version": view.version,
                "first_event_ts": str(stats.first_event_ts),
                "last_event_ts": str(stats.last_event_ts),
                "null_share": dg.MetadataValue.md(nulls.to_frame("null share").to_markdown()),
                "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
            }
        )
        yield dg.AssetCheckResult(
            check_name=schema_check_name(view),
            passed=not problems,
            metadata={"observed": dg.MetadataValue.json(stats.schema), "problems": dg.MetadataValue.json(problems)},
        )

    return _view


view_assets = [build_view_asset(CATALOG, CATALOG.views[name]) for name in CATALOG.topological_order()]


def materialization_runs(instance: dg.DagsterInstance) -> dict[str, str]:
    """The run that last materialized each view, from the instance's event log."""
    runs = {}
    for name in CATALOG.views:
        event = instance.get_latest_materialization_event(view_key(name))
        if event is not None:
            runs[name] = event.run_id
    return runs


@dg.asset(
    key=["features", "catalog"],
    deps=[view_key(name) for name in CATALOG.views],
    kinds={"duckdb"},
    owners=["team:data-platform"],
    pool=WAREHOUSE_POOL,
    automation_condition=dg.AutomationCondition.eager(),
)
def feature_catalog(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The feature registry: every view's contract, owner, versions, lineage, row counts and the feature-graph
    hash that models record at training time and serving compares against (table features.catalog)."""
    with warehouse.connect() as conn:
        registry = feature_store.write_registry(
            conn, CATALOG, run_id=context.run_id, view_run_ids=materialization_runs(context.instance)
        )
    summary = registry[["name", "version", "owner", "row_count", "first_event_ts", "last_event_ts"]]
    return dg.MaterializeResult(
        metadata={
            "feature_graph_hash": CATALOG.graph_hash(),
            "views": len(CATALOG.views),
            "features": sum(len(v.features) for v in CATALOG.views.values()),
            "dagster/row_count": len(registry),
            "dagster/table_name": feature_store.CATALOG_TABLE,
            "registry": dg.MetadataValue.md(summary.to_markdown(index=False)),
            "catalog_page": dg.MetadataValue.md(feature_store.render_catalog_markdown(CATALOG)),
        }
    )


@dg.asset(
    key=["features", "online_store"],
    deps=[view_key(name) for name in CATALOG.views],
    kinds={"sqlite", "redis"},
    owners=["team:data-platform"],
    pool=WAREHOUSE_POOL,
    automation_condition=dg.AutomationCondition.eager(),
)
def online_store(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, online_store: OnlineStoreResource
) -> dg.MaterializeResult:
    """The latest feature vector per symbol, served to online inference. Refreshed in one transaction: readers
        in other processes keep reading the previous snapshot until the new one is complete (SQLite or Redis:
    MLOPS_ONLINE_STORE)."""
    with warehouse.connect() as conn:
        vectors = feature_store.latest_vectors(conn, CATALOG)
    rows = online_store.write(vectors, key="entity_key", snapshot_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "location": online_store.location().describe(),
            "snapshot_id": context.run_id,
            "feature_graph_hash": CATALOG.graph_hash(),
            "preview": dg.MetadataValue.md(vectors.head(5).to_markdown(index=False)),
        }
    )
