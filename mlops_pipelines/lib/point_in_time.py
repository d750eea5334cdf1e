"""Point-in-time retrieval (ARCHITECTURE §5): for an entity row at time t, per view, the feature row with the
same key and the latest event time <= t (and >= t - TTL when set), ties broken by the latest created time;
rows created after t are invisible; no match gives NULLs (left join).

How it runs as one plain ASOF join per view. A feature row can be served from ``max(event_ts, created_ts)``
on. A row is never the answer if another row with the same key became visible no later and has a larger
(event_ts, created_ts): a late correction of an older bar, say. Every view table is written with a system
column ``__visible_from``: that time for the rows that can be an answer, NULL for the dominated ones (which
includes all but the best of rows that become visible at the same instant). Along ``__visible_from`` the
remaining rows' (event_ts, created_ts) strictly grow, so the answer at t is the last row with
``__visible_from <= t``: an ASOF join, as cheap as a bare one. The TTL is then a filter on that row's
event_ts: if the best visible row is too old, every other visible row is older still. The index is computed
once per materialization, from the table alone, so it is the same whatever the query.
"""

from collections.abc import Sequence

import duckdb
import pandas as pd

from mlops_pipelines.lib.feature_views import VISIBLE_FROM, FeatureView
from mlops_pipelines.lib.warehouse import quote_table, to_utc_micros

ENTITY_TIME = "event_timestamp"


class RetrievalError(ValueError):
    """The entity frame or the requested views cannot be joined (missing key column, clashing names)."""


def retrieval_sql(views: Sequence[FeatureView], entity_table: str, entity_columns: Sequence[str]) -> str:
    """One query: the entity rows in their original order, with every view's features as of each row's time."""
    selects = [f'_e."{c}"' for c in entity_columns]
    ctes = [f"_e AS (SELECT *, row_number() OVER () AS _row FROM {entity_table})"]
    joins: list[str] = []
    for i, view in enumerate(views):
        alias, prefix = f"_f{i}", f"_v{i}"
        keys = ", ".join(f'"{k}"' for k in view.entities)
        features = ", ".join(f'"{f}"' for f in view.features)
        # Only rows that can answer some entity row: visible by the latest entity time and, with a TTL, not older
        # than the earliest entity time minus the TTL (a row older than that fails the TTL for every entity row,
        # and so does any row the ASOF join would pick instead of it). A short window then sorts a slice of the
        # view, not all of it.
        ttl_us = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
        window = f'"{VISIBLE_FROM}" <= (SELECT max("{ENTITY_TIME}") FROM {entity_table})'
        if ttl_us is not None:
            window += (
                f' AND "{view.event_time}" >= (SELECT min("{ENTITY_TIME}") FROM {entity_table}) '
                f"- INTERVAL ({ttl_us}) MICROSECOND"
            )
        ctes.append(
            f'{alias} AS (SELECT {keys}, "{VISIBLE_FROM}", "{view.event_time}" AS "{prefix}_event", {features} '
            f'FROM {quote_table(view.table)} WHERE "{VISIBLE_FROM}" IS NOT NULL AND {window})'
        )
        on = " AND ".join(f'_e."{k}" = {alias}."{k}"' for k in view.entities)
        joins.append(f'ASOF LEFT JOIN {alias} ON {on} AND _e."{ENTITY_TIME}" >= {alias}."{VISIBLE_FROM}"')
        if ttl_us is None:
            fresh = f'{alias}."{prefix}_event" IS NOT NULL'
        else:
            fresh = f'{alias}."{prefix}_event" >= _e."{ENTITY_TIME}" - INTERVAL ({ttl_us}) MICROSECOND'
        selects += [f'CASE WHEN {fresh} THEN {alias}."{f}" END AS "{f}"' for f in view.features]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM _e {' '.join(joins)} ORDER BY _e._row"


def validate_request(entity_columns: Sequence[str], views: Sequence[FeatureView]) -> None:
    if ENTITY_TIME not in entity_columns:
        raise RetrievalError(f"entity frame has no {ENTITY_TIME!r} column (columns: {list(entity_columns)})")
    seen: dict[str, str] = {c: "the entity frame" for c in entity_columns}
    for view in views:
        for key in view.entities:
            if key not in entity_columns:
                raise RetrievalError(f"entity frame lacks {key!r}, the entity key of view {view.name!r}")
        for feature in view.features:
            if feature in seen:
                raise RetrievalError(f"column {feature!r} of view {view.name!r} clashes with {seen[feature]}")
            seen[feature] = f"view {view.name!r}"


def get_historical_features(
    conn: duckdb.DuckDBPyConnection, entities: pd.DataFrame, views: Sequence[FeatureView]
) -> pd.DataFrame:
    """Left-join point-in-time features of ``views`` onto ``entities`` (one output row per entity row)."""
    validate_request(list(entities.columns), views)
    frame = entities.copy()
    frame[ENTITY_TIME] = to_utc_micros(frame[ENTITY_TIME])
    conn.register("_entities", frame)
    try:
        return conn.execute(retrieval_sql(views, "_entities", list(frame.columns))).fetchdf()
    finally:
        conn.unregister("_entities")


def retrieve_to_file(
    conn: duckdb.DuckDBPyConnection, entity_path: str, views: Sequence[FeatureView], out_path: str
) -> int:
    """The ``mlops features retrieve`` path: entity file (CSV/Parquet) in, Parquet/CSV out, all inside DuckDB."""
    reader = "read_parquet" if entity_path.endswith(".parquet") else "read_csv_auto"
    source = f"{reader}('{entity_path.replace(chr(39), chr(39) * 2)}')"
    columns = [str(r[0]) for r in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    validate_request(columns, views)
    casted = f'(SELECT * REPLACE (CAST("{ENTITY_TIME}" AS TIMESTAMP WITH TIME ZONE) AS "{ENTITY_TIME}") FROM {source})'
    query = retrieval_sql(views, casted, columns)
    fmt = "(FORMAT parquet)" if out_path.endswith(".parquet") else "(FORMAT csv, HEADER)"
    conn.execute(f"COPY ({query}) TO '{out_path.replace(chr(39), chr(39) * 2)}' {fmt}")
    row = conn.execute(f"SELECT count(*) FROM {source}").fetchone()
    return int(row[0]) if row else 0
