"""A deployed model's decisions, replayed from the warehouse: the decision rows of a window, point-in-time
features at each decision time, the model's output and, once it is known, the label. Prediction drift and
realized performance (concept drift) are computed from these rows.

Outputs go to a prediction log (``monitoring.predictions``): a version's output for a decision never changes
(its features are point-in-time), so each hourly run scores only the decisions no run has scored yet.
"""

import uuid
from datetime import datetime, timedelta

import duckdb
import lightgbm as lgb
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.training import training
from mlops_pipelines.lib.training.datasets import label_sql
from mlops_pipelines.lib.training.model_specs import ModelSpec


def decision_query(
    spec: ModelSpec,
    start: datetime,
    end: datetime,
    *,
    labelled_by: datetime | None = None,
    max_rows: int | None = None,
) -> tuple[str, list[object]]:
    """The SQL (and its parameters) of ``decision_rows``: ``symbol, event_timestamp`` (and ``label``)."""
    if labelled_by is None:
        lag = timedelta(hours=1, minutes=spec.decision_delay_minutes)  # bar open -> decision
        source = (
            f'SELECT symbol, "timestamp" + INTERVAL 1 HOUR + INTERVAL {spec.decision_delay_minutes} MINUTE '
            f"AS {ENTITY_TIME} FROM {market_bars.relation(start - lag, end - lag)}"  # only the window's bars are read
        )
        where, columns = "", f"symbol, {ENTITY_TIME}"
        params: list[object] = [start, end]
    else:
        # only the bars a label in the window can use: from the first decision's bar (and the one before it, for
        # its first return) to the time labels must be known by
        first_bar = start - timedelta(hours=2, minutes=spec.decision_delay_minutes)
        bars = market_bars.relation(first_bar, labelled_by)
        source = f"SELECT symbol, {ENTITY_TIME}, label, label_available_at FROM ({label_sql(spec, bars)})"
        where = "AND label_available_at <= ?"
        params = [start, end, labelled_by]
        columns = f"symbol, {ENTITY_TIME}, label"
    limit = f"ORDER BY hash(symbol, {ENTITY_TIME}) LIMIT {int(max_rows)}" if max_rows else ""
    sql = f"SELECT {columns} FROM ({source}) WHERE {ENTITY_TIME} >= ? AND {ENTITY_TIME} < ? {where} {limit}"
    return sql, params


def decision_rows(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    start: datetime,
    end: datetime,
    *,
    labelled_by: datetime | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """One row per symbol and decision time in [start, end) (a decision follows each bar close by the spec's
    delay). With ``labelled_by``: only the decisions whose label was known by then, with ``label``.
    ``max_rows`` keeps a deterministic subset (the lowest row hashes), so a long window stays cheap to score."""
    sql, params = decision_query(spec, start, end, labelled_by=labelled_by, max_rows=max_rows)
    return conn.execute(sql, params).fetchdf()


def has_decisions(conn: duckdb.DuckDBPyConnection, spec: ModelSpec, start: datetime, end: datetime) -> bool:
    """Whether any decision falls in [start, end) (a bar closed in time): an existence query, no rows built, so an
    hour past the data's end is recognized without reading the window."""
    lag = timedelta(hours=1, minutes=spec.decision_delay_minutes)  # bar open -> decision
    row = conn.execute(f"SELECT 1 FROM {market_bars.relation(start - lag, end - lag)} LIMIT 1").fetchone()
    return row is not None


def score(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    booster: lgb.Booster,
    decisions: pd.DataFrame,
) -> pd.DataFrame:
    """The decision rows with their point-in-time features and the model's ``prediction``."""
    frame = get_historical_features(conn, decisions, [catalog.views[name] for name in spec.feature_views])
    frame["prediction"] = training.predict(booster, frame, booster.feature_name()) if len(frame) else []
    return frame


PREDICTIONS_TABLE = "monitoring.predictions"
PREDICTIONS_DDL = f"""
    model VARCHAR, version VARCHAR, symbol VARCHAR, {ENTITY_TIME} TIMESTAMP WITH TIME ZONE, prediction DOUBLE,
    logged_at TIMESTAMP WITH TIME ZONE
"""


def logged_scores(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    booster: lgb.Booster,
    decisions: pd.DataFrame,
) -> pd.DataFrame:
    """``decisions`` with the version's ``prediction``: read from the prediction log, after scoring (and
    logging, in one transaction) the decisions it does not hold yet."""
    name = f"_decisions_{uuid.uuid4().hex}"
    conn.register(name, decisions)
    try:
        return _with_logged_predictions(conn, spec, version, catalog, booster, name, "_d.*, _l.prediction")
    finally:
        conn.unregister(name)


def window_scores(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    booster: lgb.Booster,
    start: datetime,
    end: datetime,
    *,
    labelled_by: datetime | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """``logged_scores`` of ``decision_rows(start, end, ...)``, inside DuckDB: the window's decisions never leave
    the warehouse; only those the log lacks are fetched and scored. Columns: ``prediction`` (and ``label`` with
    ``labelled_by``), in no particular order."""
    sql, params = decision_query(spec, start, end, labelled_by=labelled_by, max_rows=max_rows)
    name = f"_decisions_{uuid.uuid4().hex}"
    conn.execute(f"CREATE TEMP TABLE {name} AS {sql}", params)
    try:
        selected = "_d.label, _l.prediction" if labelled_by is not None else "_l.prediction"
        return _with_logged_predictions(conn, spec, version, catalog, booster, name, selected)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def _with_logged_predictions(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    version: str,
    catalog: FeatureCatalog,
    booster: lgb.Booster,
    decisions: str,
    selected: str,
) -> pd.DataFrame:
    """``selected`` of the relation ``decisions`` (``_d``) joined with the version's logged predictions (``_l``),
    after scoring and logging (in one transaction) the decisions the log lacks."""
    table = warehouse.quote_table(PREDICTIONS_TABLE)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({PREDICTIONS_DDL})")
    logged = (
        f"(SELECT symbol, {ENTITY_TIME}, prediction FROM {table} WHERE model = ? AND version = ? "
        f"AND {ENTITY_TIME} BETWEEN (SELECT min({ENTITY_TIME}) FROM {decisions}) "
        f"AND (SELECT max({ENTITY_TIME}) FROM {decisions}))"
    )
    missing = conn.execute(
        f"SELECT symbol, {ENTITY_TIME} FROM {decisions} ANTI JOIN {logged} AS _l USING (symbol, {ENTITY_TIME})",
        [spec.name, version],
    ).fetchdf()
    if len(missing):
        scored = score(conn, spec, catalog, booster, missing)[["symbol", ENTITY_TIME, "prediction"]]
        conn.register("_scored", scored)
        try:
            with warehouse.transaction(conn):
                conn.execute(
                    f"INSERT INTO {table} SELECT ?, ?, symbol, {ENTITY_TIME}, prediction, now() FROM _scored",
                    [spec.name, version],
                )
        finally:
            conn.unregister("_scored")
    return conn.execute(
        f"SELECT {selected} FROM {decisions} AS _d JOIN {logged} AS _l USING (symbol, {ENTITY_TIME})",
        [spec.name, version],
    ).fetchdf()


def prune_predictions(conn: duckdb.DuckDBPyConnection, model: str, before: datetime) -> None:
    """The log keeps what monitoring reads: nothing older than the oldest reference window."""
    if warehouse.table_exists(conn, PREDICTIONS_TABLE):
        table = warehouse.quote_table(PREDICTIONS_TABLE)
        conn.execute(f"DELETE FROM {table} WHERE model = ? AND {ENTITY_TIME} < ?", [model, before])
