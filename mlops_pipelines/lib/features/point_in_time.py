"""Point-in-time retrieval: for an entity row at time t, per view, the feature row with the
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
once per materialization, from the table alone, so it is the same whatever the query
(``lib/features/point_in_time_index.py`` writes it).

The entity rows' column names are the user's (an entity file's header, a caller's DataFrame) and never reach
the SQL text: the entity relation's columns are renamed by position (``_c0``, ``_c1``, ...), the entity keys
and ``event_timestamp`` are found by comparing names in Python with the views' declared columns, and the
result gets the user's names back outside SQL (pandas labels, the Arrow schema of the output file). Every other
identifier is a declared one, quoted by ``warehouse.quote_ident``; the entity file's path is a query parameter.
Retrieval only reads the warehouse: a caller that does nothing else opens it read-only.
"""

import os
import uuid
from collections.abc import Hashable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.warehouse import quote_ident, quote_table, to_utc_micros
from mlops_pipelines.lib.features.feature_views import FeatureView, feature_columns
from mlops_pipelines.lib.features.point_in_time_index import VISIBLE_FROM

ENTITY_TIME = "event_timestamp"
_BATCH_ROWS = 100_000  # rows per Arrow batch written to the output file: bounded memory for any entity file


class RetrievalError(MlopsError, ValueError):
    """The entity rows or the requested views cannot be joined; the message names the file, column and row."""


def _col(position: int) -> str:
    """The internal name of the entity relation's column at ``position`` (0-based)."""
    return f"_c{position}"


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, clipped: a hostile column name or value must not swamp the message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def retrieval_sql(views: Sequence[FeatureView], entities: str, entity_columns: Sequence[Hashable]) -> str:
    """One query: the entity rows in their original order, with every view's features as of each row's time.

    ``entities``: a relation (a table name or a parenthesized query, written by the caller, never user text)
    whose columns are, in order, ``entity_columns``, with ``event_timestamp`` a UTC microsecond timestamp.
    The names are only matched against the views' keys; the relation is renamed by position, so the result's
    first columns are ``_c0``, ``_c1``, ... (``output_names`` gives them their names back), then each view's
    features under their declared names.
    """
    position = {name: i for i, name in reversed(list(enumerate(entity_columns)))}  # the first of equal names
    aliases = [_col(i) for i in range(len(entity_columns))]
    t = f"_e.{_col(position[ENTITY_TIME])}"
    selects = [f"_e.{alias}" for alias in aliases]
    ctes = [f"_e AS (SELECT *, row_number() OVER () AS _row FROM {entities} AS _src({', '.join(aliases)}))"]
    joins: list[str] = []
    visible_from = quote_ident(VISIBLE_FROM)
    for i, view in enumerate(views):
        alias, event = f"_f{i}", quote_ident(f"_v{i}_event")
        keys = ", ".join(quote_ident(k) for k in view.entities)
        features = ", ".join(quote_ident(f) for f in view.features)
        # Only rows that can answer some entity row: visible by the latest entity time and, with a TTL, not older
        # than the earliest entity time minus the TTL (a row older than that fails the TTL for every entity row,
        # and so does any row the ASOF join would pick instead of it). A short window then sorts a slice of the
        # view, not all of it.
        ttl_us = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
        window = f"{visible_from} <= (SELECT max({t}) FROM _e)"
        if ttl_us is not None:
            window += (
                f" AND {quote_ident(view.event_time)} >= (SELECT min({t}) FROM _e) - INTERVAL ({ttl_us}) MICROSECOND"
            )
        ctes.append(
            f"{alias} AS (SELECT {keys}, {visible_from}, {quote_ident(view.event_time)} AS {event}, {features} "
            f"FROM {quote_table(view.table)} WHERE {visible_from} IS NOT NULL AND {window})"
        )
        on = " AND ".join(f"_e.{_col(position[k])} = {alias}.{quote_ident(k)}" for k in view.entities)
        joins.append(f"ASOF LEFT JOIN {alias} ON {on} AND {t} >= {alias}.{visible_from}")
        if ttl_us is None:
            fresh = f"{alias}.{event} IS NOT NULL"
        else:
            fresh = f"{alias}.{event} >= {t} - INTERVAL ({ttl_us}) MICROSECOND"
        selects += [f"CASE WHEN {fresh} THEN {alias}.{quote_ident(f)} END AS {quote_ident(f)}" for f in view.features]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM _e {' '.join(joins)} ORDER BY _e._row"


def output_names(entity_columns: Sequence[Hashable], views: Sequence[FeatureView]) -> list[Hashable]:
    """The result's column names: the entity columns as given, then every view's features."""
    return [*entity_columns, *feature_columns(views)]


def validate_request(
    entity_columns: Sequence[Hashable], views: Sequence[FeatureView], source: str = "entity frame"
) -> None:
    """Raise ``RetrievalError`` unless the entity columns hold ``event_timestamp`` and every view's entity key
    (each once), and no feature name clashes with an entity column or another view's feature. Other entity
    columns are carried through to the result as they are."""
    shown = ", ".join(_shown(c, 40) for c in list(entity_columns)[:20])
    if ENTITY_TIME not in entity_columns:
        raise RetrievalError(f"{source} has no {ENTITY_TIME!r} column (columns: {shown})")
    required = {ENTITY_TIME: "the entity time"}
    for view in views:
        for key in view.entities:
            if key not in entity_columns:
                raise RetrievalError(f"{source} lacks {key!r}, the entity key of view {view.name!r} (columns: {shown})")
            required.setdefault(key, f"an entity key of view {view.name!r}")
    for name, role in required.items():
        count = list(entity_columns).count(name)
        if count > 1:
            raise RetrievalError(f"{source} has {count} columns named {name!r} ({role}); keep one")
    seen: dict[Hashable, str] = {c: source for c in entity_columns}
    for view in views:
        for feature in view.features:
            if feature in seen:
                raise RetrievalError(f"column {feature!r} of view {view.name!r} clashes with {seen[feature]}")
            seen[feature] = f"view {view.name!r}"


def _entity_times(values: pd.Series, source: str) -> pd.Series:
    """The entity times as UTC microseconds (``to_utc_micros``); a missing or unreadable one raises
    ``RetrievalError`` naming its row (0-based position in the frame)."""
    try:
        times = to_utc_micros(values)
    except (ValueError, TypeError, OverflowError) as exc:
        for position, value in enumerate(values):
            try:
                to_utc_micros(pd.Series([value]))
            except (ValueError, TypeError, OverflowError):
                raise RetrievalError(
                    f"{source}, row {position}: {ENTITY_TIME} {_shown(value)} is not a timestamp"
                ) from exc
        raise RetrievalError(f"{source}: {ENTITY_TIME} cannot be read as timestamps ({exc})") from exc
    missing = times.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise RetrievalError(f"{source}, row {missing[0]}: {ENTITY_TIME} is missing ({len(missing)} rows)")
    return times


def get_historical_features(
    conn: duckdb.DuckDBPyConnection, entities: pd.DataFrame, views: Sequence[FeatureView]
) -> pd.DataFrame:
    """Left-join point-in-time features of ``views`` onto ``entities`` (one output row per entity row).

    ``entities`` needs ``event_timestamp`` (naive times are UTC; sub-microsecond parts are cut off) and each
    view's entity key; any other column comes back unchanged, whatever its name. Rows are numbered from 0 in
    errors. The query only reads: open ``conn`` read-only (``warehouse.connect(path, read_only=True)``) when
    retrieval is all the caller does.
    """
    columns = list(entities.columns)
    validate_request(columns, views)
    frame = entities.set_axis([_col(i) for i in range(len(columns))], axis=1)
    time_column = _col(columns.index(ENTITY_TIME))
    frame[time_column] = _entity_times(frame[time_column], "entity frame")
    name = f"_entities_{uuid.uuid4().hex}"  # unique: never shadows a table, never meets another call's frame
    conn.register(name, frame)
    try:
        result = conn.execute(retrieval_sql(views, name, columns)).fetchdf()
    finally:
        conn.unregister(name)
    return result.set_axis(output_names(columns, views), axis=1)


def _micros_sql(column: str, dtype: str) -> str:
    """SQL turning an entity file's time column into a UTC microsecond timestamp, sub-microseconds cut off.

    DuckDB rounds when it casts a nanosecond timestamp to microseconds (an entity time 500 ns before a row's
    visibility would be served that row), so those are floored on the integer nanoseconds; text is parsed as
    TIMESTAMPTZ (naive text is UTC: the session time zone), which truncates.
    """
    dtype = dtype.upper()
    if dtype.endswith("_NS"):
        ns = f"epoch_ns({column})"
        return f"CAST(make_timestamp(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000) AS TIMESTAMPTZ)"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"CAST({column} AS TIMESTAMPTZ)"
    return f"CAST(CAST({column} AS VARCHAR) AS TIMESTAMPTZ)"


def _check_entity_times(
    conn: duckdb.DuckDBPyConnection, relation: str, params: list[object], column: str, dtype: str, source: str
) -> None:
    """Raise ``RetrievalError`` naming the first row (counted from 1, the header not counted) whose time is
    missing or is not a timestamp."""
    dtype = dtype.upper()
    bad = "v IS NULL"
    if not (dtype.startswith("TIMESTAMP") or dtype == "DATE"):
        bad += " OR TRY_CAST(CAST(v AS VARCHAR) AS TIMESTAMPTZ) IS NULL"
    rows = conn.execute(
        f"SELECT n, CAST(v AS VARCHAR) FROM (SELECT row_number() OVER () AS n, {column} AS v FROM {relation}) "
        f"WHERE {bad} ORDER BY n LIMIT 1",
        params,
    ).fetchall()
    if rows:
        row, value = rows[0]
        what = "is missing" if value is None else f"{_shown(value)} is not a timestamp"
        raise RetrievalError(f"{source}, row {row}: {ENTITY_TIME} {what}")


def retrieve_to_file(
    conn: duckdb.DuckDBPyConnection, entity_path: str, views: Sequence[FeatureView], out_path: str
) -> int:
    """The ``mlops features retrieve`` path: entity file (``.parquet``, else CSV) in, Parquet (``.parquet``) or
    CSV out; returns the number of rows written.

    The join runs in DuckDB and streams to the output in Arrow batches, written to a temporary file beside it
    and renamed at the end: a failed retrieval leaves no partial output. Errors (unreadable entity file, missing
    column, bad time, unwritable output) are ``RetrievalError`` naming the file, column and row.
    """
    source = f"entity file {entity_path}"
    if not Path(entity_path).is_file():
        raise RetrievalError(f"{source} does not exist")
    reader_sql = f"{'read_parquet' if str(entity_path).endswith('.parquet') else 'read_csv_auto'}($1)"
    params: list[object] = [str(entity_path)]
    try:
        described = conn.execute(f"DESCRIBE SELECT * FROM {reader_sql}", params).fetchall()
    except duckdb.Error as exc:
        raise RetrievalError(f"cannot read {source}: {exc}") from exc
    columns, types = [str(r[0]) for r in described], [str(r[1]) for r in described]
    if reader_sql.startswith("read_parquet"):
        # DuckDB renames columns whose names repeat case-insensitively (``SYMBOL`` -> ``SYMBOL_1``); the file's
        # own names, in the same order, come back unchanged.
        names = pq.read_schema(entity_path).names
        columns = names if len(names) == len(columns) else columns
    validate_request(columns, views, source)
    time_position = columns.index(ENTITY_TIME)
    aliases = [_col(i) for i in range(len(columns))]
    raw = f"(SELECT * FROM {reader_sql} AS _src({', '.join(aliases)}))"
    _check_entity_times(conn, raw, params, aliases[time_position], types[time_position], source)
    typed = ", ".join(
        f"{_micros_sql(alias, types[i])} AS {alias}" if i == time_position else alias for i, alias in enumerate(aliases)
    )
    query = retrieval_sql(views, f"(SELECT {typed} FROM {raw})", columns)
    out = Path(out_path)
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex}.partial")
    try:
        batches = conn.sql(query, params=params).to_arrow_reader(_BATCH_ROWS)
    except duckdb.Error as exc:
        raise RetrievalError(f"retrieval for {source} failed: {exc}") from exc
    try:
        rows = _write_batches(batches, [str(n) for n in output_names(columns, views)], partial, out.suffix)
        os.replace(partial, out)
    except duckdb.Error as exc:
        raise RetrievalError(f"retrieval for {source} failed: {exc}") from exc
    except OSError as exc:
        raise RetrievalError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        batches.close()  # DuckDB refuses the connection's next query while a result is open
        if partial.exists():  # False, not an error, when the folder is missing or is a file
            partial.unlink()
    return rows


def _write_batches(batches: pa.RecordBatchReader, names: list[str], path: Path, suffix: str) -> int:
    """Write every batch under ``names`` (the schema's names replaced by position) as Parquet or CSV."""
    schema = pa.schema([field.with_name(name) for field, name in zip(batches.schema, names, strict=True)])
    rows = 0
    with path.open("wb") as sink:
        writer = pq.ParquetWriter(sink, schema) if suffix == ".parquet" else pa_csv.CSVWriter(sink, schema)
        with writer:
            for batch in batches:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                rows += batch.num_rows
    return rows
