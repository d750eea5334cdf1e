"""Materializing feature views and keeping the registry that records every version.

Owns the feature tables: every view table (``features.<name>__v<version>``), the registry ``features.catalog``
and ``features.lineage``: their DDL and every read and write (point-in-time retrieval, which only reads view
tables, is ``point_in_time.py``).
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.features.feature_views import (
    FeatureCatalog,
    FeatureView,
    ViewRefError,
    parse_view_ref,
    schema_mismatches,
)
from mlops_pipelines.lib.features.point_in_time_index import VISIBLE_FROM, exact_index_update_sql, fast_indexed_select

CATALOG_TABLE = "features.catalog"
LINEAGE_TABLE = "features.lineage"
_CATALOG_COLUMNS = """
    name VARCHAR, version INTEGER, table_name VARCHAR, owner VARCHAR, description VARCHAR,
    entities VARCHAR, event_time VARCHAR, created_time VARCHAR, ttl_seconds DOUBLE,
    availability_lag_seconds DOUBLE, depends_on VARCHAR, upstream_tables VARCHAR, downstream VARCHAR,
    sql VARCHAR, schema_json VARCHAR, features VARCHAR, tags VARCHAR, definition_hash VARCHAR,
    feature_graph_hash VARCHAR, row_count BIGINT, first_event_ts TIMESTAMP WITH TIME ZONE,
    last_event_ts TIMESTAMP WITH TIME ZONE, dagster_run_id VARCHAR, registered_at TIMESTAMP WITH TIME ZONE,
    is_current BOOLEAN
"""


class ViewSchemaError(MlopsError, ValueError):
    """A view's SQL produced columns or types other than its declared schema."""


@dataclass(frozen=True)
class ViewStats:
    table: str
    row_count: int
    first_event_ts: datetime | None
    last_event_ts: datetime | None
    schema: dict[str, str]


def materialize_view(conn: duckdb.DuckDBPyConnection, catalog: FeatureCatalog, name: str) -> ViewStats:
    """Recompute one view into ``features.<name>__v<version>`` in a single transaction."""
    view = catalog.views[name]
    for dep in view.depends_on:
        table = dep if "." in dep else catalog.views[dep].table
        if not warehouse.table_exists(conn, table):
            raise NotFound(f"feature view {name!r} needs {table}, which has not been materialized yet")
    rows = write_indexed(conn, view, catalog.render_body(name))
    return view_stats(conn, view, rows)


def write_indexed(conn: duckdb.DuckDBPyConnection, view: FeatureView, body_sql: str) -> int:
    """Replace ``view.table`` with ``body_sql``'s rows plus the point-in-time index, in one transaction; returns
    the row count.

    A result that does not match the declared schema is rolled back (``ViewSchemaError``).
    The index is written by the cheap ``fast_indexed_select`` and then made exact for the keys it could not
    decide (those with a NULL in it: late corrections, ties); append-only data has none, so the second
    statement only scans. The result equals the exact suffix-minimum index row for row.
    """
    table = warehouse.quote_table(view.table)
    with warehouse.transaction(conn):
        conn.execute(f"CREATE OR REPLACE TABLE {table} AS {fast_indexed_select(view, body_sql)}")
        conn.execute(exact_index_update_sql(view, table))
        problems = check_view_schema(conn, view)
        if problems:  # raised before COMMIT: the table readers see keeps its declared schema
            raise ViewSchemaError(
                f"feature view {view.name!r} v{view.version}: its SQL does not produce the declared schema "
                f"({'; '.join(problems)}); {view.table} was left as it was"
            )
        return warehouse.row_count(conn, view.table)


def view_stats(conn: duckdb.DuckDBPyConnection, view: FeatureView, rows: int | None = None) -> ViewStats:
    event = warehouse.quote_ident(view.event_time)
    first_last = conn.execute(f"SELECT min({event}), max({event}) FROM {warehouse.quote_table(view.table)}").fetchall()
    first_last = first_last[0] if first_last else None
    return ViewStats(
        table=view.table,
        row_count=warehouse.row_count(conn, view.table) if rows is None else rows,
        first_event_ts=first_last[0] if first_last else None,
        last_event_ts=first_last[1] if first_last else None,
        schema=warehouse.table_schema(conn, view.table),
    )


def last_event_time(conn: duckdb.DuckDBPyConnection, view: FeatureView) -> datetime | None:
    """The newest event time in the view's table (None when it is empty)."""
    event = warehouse.quote_ident(view.event_time)
    return warehouse.scalar(conn, f"SELECT max({event}) FROM {warehouse.quote_table(view.table)}")


def preview(conn: duckdb.DuckDBPyConnection, view: FeatureView, rows: int = 5) -> pd.DataFrame:
    """The view's newest rows (by event time)."""
    event = warehouse.quote_ident(view.event_time)
    return conn.execute(
        f"SELECT * FROM {warehouse.quote_table(view.table)} ORDER BY {event} DESC LIMIT ?", [rows]
    ).fetchdf()


def null_shares(conn: duckdb.DuckDBPyConnection, view: FeatureView) -> pd.Series:
    """Share of NULL values per feature column of the view's table."""
    shares = ", ".join(
        f"avg(CASE WHEN {warehouse.quote_ident(f)} IS NULL THEN 1 ELSE 0 END) AS {warehouse.quote_ident(f)}"
        for f in view.features
    )
    return conn.execute(f"SELECT {shares} FROM {warehouse.quote_table(view.table)}").fetchdf().iloc[0]


def check_view_schema(conn: duckdb.DuckDBPyConnection, view: FeatureView) -> list[str]:
    """Differences between the materialized table and the declared schema (empty when they match)."""
    if not warehouse.table_exists(conn, view.table):
        return [f"{view.table} does not exist"]
    expected = {**view.schema_, VISIBLE_FROM: "TIMESTAMP WITH TIME ZONE"}
    return schema_mismatches(expected, warehouse.table_schema(conn, view.table))


def write_registry(
    conn: duckdb.DuckDBPyConnection,
    catalog: FeatureCatalog,
    *,
    run_id: str,
    view_run_ids: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Upsert one registry row per current view version; rows of older versions stay, marked not current.
    ``view_run_ids``: the run that materialized each view (default: ``run_id`` for all)."""
    now = now or datetime.now(UTC)
    graph_hash = catalog.graph_hash()
    rows: list[dict[str, Any]] = []
    for name in catalog.topological_order():
        view = catalog.views[name]
        stats = view_stats(conn, view) if warehouse.table_exists(conn, view.table) else None
        contract = view.contract(catalog)
        rows.append(
            {
                "name": view.name,
                "version": view.version,
                "table_name": view.table,
                "owner": view.owner,
                "description": view.metadata()["description"],
                "entities": json.dumps(list(view.entities)),
                "event_time": view.event_time,
                "created_time": view.created_time,
                "ttl_seconds": view.ttl.total_seconds() if view.ttl is not None else None,  # for the catalog's bars
                "availability_lag_seconds": contract["availability_lag_seconds"],
                "depends_on": json.dumps(contract["depends_on"]),
                "upstream_tables": json.dumps([d if "." in d else catalog.views[d].table for d in view.depends_on]),
                "downstream": json.dumps(catalog.downstream(name)),
                "sql": contract["sql"],
                "schema_json": json.dumps(view.schema_),
                "features": json.dumps(view.features),
                "tags": json.dumps(view.tags, sort_keys=True),
                "definition_hash": _definition_hash(contract),
                "feature_graph_hash": graph_hash,
                "row_count": stats.row_count if stats else None,
                "first_event_ts": stats.first_event_ts if stats else None,
                "last_event_ts": stats.last_event_ts if stats else None,
                "dagster_run_id": (view_run_ids or {}).get(name, run_id),
                "registered_at": now,
                "is_current": True,
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("first_event_ts", "last_event_ts", "registered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    lineage = pd.DataFrame(
        [
            {"upstream": dep if "." in dep else catalog.views[dep].table, "downstream": view.table}
            for view in catalog.views.values()
            for dep in view.depends_on
        ]
    )
    current = [(v.name, v.version) for v in catalog.views.values()]
    with warehouse.transaction(conn):
        conn.execute(f"CREATE TABLE IF NOT EXISTS {CATALOG_TABLE} ({_CATALOG_COLUMNS})")
        conn.execute(f"UPDATE {CATALOG_TABLE} SET is_current = false")
        conn.executemany(f"DELETE FROM {CATALOG_TABLE} WHERE name = ? AND version = ?", current)
        conn.register("_registry", frame)
        conn.execute(f"INSERT INTO {CATALOG_TABLE} BY NAME SELECT * FROM _registry")
        conn.unregister("_registry")
        conn.execute(f"CREATE OR REPLACE TABLE {LINEAGE_TABLE} (upstream VARCHAR, downstream VARCHAR)")
        conn.register("_lineage", lineage)
        conn.execute(f"INSERT INTO {LINEAGE_TABLE} SELECT upstream, downstream FROM _lineage")
        conn.unregister("_lineage")
    return frame


def _definition_hash(contract: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(contract, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def registry_versions(conn: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """Every registered version of a view, newest first."""
    if not warehouse.table_exists(conn, CATALOG_TABLE):
        return pd.DataFrame()
    return conn.execute(f"SELECT * FROM {CATALOG_TABLE} WHERE name = ? ORDER BY version DESC", [name]).fetchdf()


def render_catalog_markdown(catalog: FeatureCatalog) -> str:
    """A catalog page for people looking for features to reuse."""
    lines = [
        "# Feature catalog",
        "",
        "Generated by `mlops features docs` from `mlops_pipelines/catalog/feature_views.py`; do not edit by hand.",
        "",
        f"Feature-graph hash: `{catalog.graph_hash()}`",
        "",
        f"Built for {catalog.bar_clock} ({catalog.bar_clock.periods_per_year:g} bars a year; `MLOPS_BAR_INTERVAL`, "
        "`MLOPS_MARKET_CALENDAR`). Windows count bars: a feature suffixed `_24b` reads the last 24 bars, whatever "
        "their length; annualized features use the clock's bars a year; TTLs are in bars.",
        "",
        "| view | version | owner | features | depends on | TTL |",
        "|---|---|---|---|---|---|",
    ]
    for name in catalog.topological_order():
        view = catalog.views[name]
        lines.append(
            f"| [{name}](#{name}) | {view.version} | {view.owner} | {len(view.features)} | "
            f"{', '.join(view.depends_on)} | {_ttl_text(view)} |"
        )
    for name in catalog.topological_order():
        view = catalog.views[name]
        lines += [
            "",
            f"## {name}",
            "",
            " ".join(view.description.split()),
            "",
            f"- table: `{view.table}`; entity: {', '.join(view.entities)}; event time: `{view.event_time}`; "
            f"created time: `{view.created_time}` (+{view.availability_lag} availability lag)",
            f"- upstream: {', '.join(view.depends_on)}; downstream: {', '.join(catalog.downstream(name)) or 'none'}",
            f"- tags: {', '.join(f'{k}={v}' for k, v in sorted(view.tags.items())) or 'none'}",
            "",
            "| column | type |",
            "|---|---|",
            *[f"| {column} | {dtype} |" for column, dtype in view.schema_.items()],
        ]
    return "\n".join(lines) + "\n"


def _ttl_text(view: FeatureView) -> str:
    if view.ttl_bars is not None:
        return f"{view.ttl_bars} bars ({view.ttl})"
    return str(view.ttl or "none")


def resolve_view_refs(conn: duckdb.DuckDBPyConnection, catalog: FeatureCatalog, refs: list[str]) -> list[FeatureView]:
    """``name`` (the catalog's current version) or ``name@version`` (any version in the registry); an unknown
    one raises ``ViewRefError`` listing the registered versions."""
    resolved: list[FeatureView] = []
    for ref in refs:
        name, version = parse_view_ref(ref)
        current = catalog.views.get(name)
        if current is not None and version in (None, current.version):
            resolved.append(current)
            continue
        history = registry_versions(conn, name)
        match = history[history["version"] == version] if version is not None and len(history) else history.head(0)
        if match.empty:
            known = sorted(history["version"].tolist()) if len(history) else []
            raise ViewRefError(
                f"feature view {ref!r} is not in the catalog or registry"
                + (f" (registered versions: {known})" if known else "")
            )
        resolved.append(_view_from_registry(match.iloc[0]))
    return resolved


def _view_from_registry(row: pd.Series) -> FeatureView:
    """Rebuild a retired version's definition from its registry row, for reading its table."""
    ttl = row["ttl_seconds"]
    return FeatureView.model_construct(
        name=row["name"],
        version=int(row["version"]),
        owner=row["owner"],
        description=row["description"],
        entities=tuple(json.loads(row["entities"])),
        event_time=row["event_time"],
        created_time=row["created_time"],
        ttl=None if pd.isna(ttl) else timedelta(seconds=float(ttl)),
        availability_lag=timedelta(seconds=float(row["availability_lag_seconds"])),
        depends_on=(),
        sql=row["sql"],
        schema_=json.loads(row["schema_json"]),
        tags=json.loads(row["tags"]),
    )


def latest_vectors(conn: duckdb.DuckDBPyConnection, catalog: FeatureCatalog) -> pd.DataFrame:
    """The latest row per entity of every view, side by side: the online store's snapshot.

    Per view, "latest" is the largest (event time, created time); each view's event time is kept as
    ``<view>__event_ts`` so serving can judge freshness against the TTL.
    """
    entities = {view.entities for view in catalog.views.values()}
    if len(entities) != 1 or len(next(iter(entities))) != 1:
        raise ValueError(f"the online store needs one single-column entity key shared by all views, got {entities}")
    (key,) = next(iter(entities))
    key = warehouse.quote_ident(key)
    parts, selects = [], [f"coalesce({', '.join(f'_{i}.{key}' for i in range(len(catalog.views)))}) AS entity_key"]
    for i, view in enumerate(catalog.views.values()):
        parts.append(
            f"_{i} AS (SELECT * FROM {warehouse.quote_table(view.table)} QUALIFY row_number() OVER ("
            f"PARTITION BY {key} ORDER BY {warehouse.quote_ident(view.event_time)} DESC, "
            f"{warehouse.quote_ident(view.created_time)} DESC) = 1)"
        )
        selects += [f"_{i}.{warehouse.quote_ident(f)}" for f in view.features]
        selects.append(
            f"_{i}.{warehouse.quote_ident(view.event_time)} AS {warehouse.quote_ident(f'{view.name}__event_ts')}"
        )
    joins = "_0" + "".join(f" FULL OUTER JOIN _{i} USING ({key})" for i in range(1, len(catalog.views)))
    sql = f"WITH {', '.join(parts)} SELECT {', '.join(selects)} FROM {joins} ORDER BY entity_key"
    return conn.execute(sql).fetchdf()
