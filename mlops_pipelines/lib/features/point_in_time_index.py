"""The point-in-time index of a feature view table: the system column ``__visible_from``, written with every
materialization, that lets retrieval answer "the row as of t" with one plain ASOF join
(``lib/features/point_in_time.py`` explains the idea and how retrieval reads it).

A feature row can be served from ``max(event time, created time)`` on. A row is *dominated* when some row of the
same key that is later in (event time, created time) order becomes visible no later than it does: it can never
be the answer. ``__visible_from`` is NULL for those and ``max(event, created)`` otherwise; the exact definition
is a suffix minimum per key. The materializer writes it in two statements: ``fast_indexed_select`` (compares
each row with the next one of its key only, exact for append-only data), then ``exact_index_update_sql`` for
the keys the fast pass could not decide.
"""

from mlops_pipelines.lib.core.warehouse import quote_ident
from mlops_pipelines.lib.features.feature_views import FeatureView

VISIBLE_FROM = "__visible_from"


def _visible_sql(event: str, created: str) -> str:
    """When a row becomes servable: ``max(event, created)``; never when either time is NULL (a row whose
    creation time is unknown cannot be shown to have existed at any t). DuckDB's greatest() skips NULLs."""
    never = "'infinity'::TIMESTAMPTZ"
    return f"greatest(coalesce({event}, {never}), coalesce({created}, {never}))"


def fast_indexed_select(view: FeatureView, body_sql: str) -> str:
    """``body_sql``'s declared columns plus ``__visible_from``, each row compared with the next row of its key only
    (``lead``) instead of with all later ones (the exact suffix minimum).

    Why: the suffix minimum over all later rows is a segment-tree aggregate, about twice the cost of ``lead``
    over the same sort, and for append-only data (bars: the created time grows with the event time) the
    visibility times of a key strictly increase, so the next row *is* the minimum of the later ones.

    Exact wherever it does not return NULL for any row of a key: then the key's visibility times strictly
    increase (a NULL time or a step that does not increase gives NULL), so every row's later minimum is its
    successor's time. A NULL it returns is also right (the successor alone dominates the row), but a row that
    is not NULL may still be dominated by a row further on when the key's times dip later; those keys, and
    only those, are recomputed with ``exact_index_update_sql``.
    """
    keys = ", ".join(quote_ident(k) for k in view.entities)
    e, c = quote_ident(view.event_time), quote_ident(view.created_time)
    columns = ", ".join(quote_ident(col) for col in view.schema_)
    return f"""
        SELECT {columns},
               CASE WHEN _visible < coalesce(lead(_visible) OVER (PARTITION BY {keys} ORDER BY {e}, {c}),
                                             'infinity'::TIMESTAMPTZ)
                    THEN _visible END AS {quote_ident(VISIBLE_FROM)}
        FROM (SELECT *, {_visible_sql(e, c)} AS _visible FROM ({body_sql}) AS _body) AS _rows
    """


def exact_index_update_sql(view: FeatureView, table_sql: str) -> str:
    """Recompute ``__visible_from`` exactly (the suffix minimum) for the keys of ``table_sql`` that have a NULL
    in it after ``fast_indexed_select``: the only keys whose fast index can be wrong. Rows are matched by
    ``rowid``, so the statement is right even for duplicated (key, event, created) rows."""
    keys = ", ".join(quote_ident(k) for k in view.entities)
    e, c = quote_ident(view.event_time), quote_ident(view.created_time)
    same_key = " AND ".join(f"_n.{quote_ident(k)} IS NOT DISTINCT FROM _t.{quote_ident(k)}" for k in view.entities)
    visible_from = quote_ident(VISIBLE_FROM)
    return f"""
        UPDATE {table_sql} SET {visible_from} = _exact._index
        FROM (
            SELECT _rid,
                   CASE WHEN _visible < coalesce(min(_visible) OVER _later, 'infinity'::TIMESTAMPTZ)
                        THEN _visible END AS _index
            FROM (
                SELECT rowid AS _rid, {keys}, {e}, {c}, {_visible_sql(e, c)} AS _visible FROM {table_sql} AS _t
                WHERE EXISTS (SELECT 1 FROM {table_sql} AS _n WHERE _n.{visible_from} IS NULL AND {same_key})
            ) AS _rows
            WINDOW _later AS (PARTITION BY {keys} ORDER BY {e}, {c} ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
        ) AS _exact
        WHERE {table_sql}.rowid = _exact._rid
    """
