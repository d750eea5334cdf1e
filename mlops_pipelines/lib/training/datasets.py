"""Point-in-time training sets: labels from raw bars after the decision, features as of the decision,
time-ordered train / validation / test splits with a purge so that no label overlaps the next split.

Owns the training tables: ``training.<model>_dataset`` (a model's latest set), ``training.dataset_<id>`` (every
set, immutable, by the first 12 hex digits of its content hash) and the registry ``training.datasets`` (one row
per stored set): their DDL and every read and write.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.bars import BarClock
from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.ingestion.market_bars import BARS_TABLE, last_bar_time
from mlops_pipelines.lib.training.model_specs import ModelSpec

SPLITS = ("train", "validation", "test")
DATASET_REGISTRY = "training.datasets"
_REGISTRY_COLUMNS = """
    dataset_id VARCHAR, dataset_hash VARCHAR, model VARCHAR, table_name VARCHAR, row_count BIGINT,
    train_rows BIGINT, validation_rows BIGINT, test_rows BIGINT,
    first_decision TIMESTAMP WITH TIME ZONE, last_decision TIMESTAMP WITH TIME ZONE,
    features VARCHAR, feature_views VARCHAR,
    label VARCHAR, dagster_run_id VARCHAR, created_at TIMESTAMP WITH TIME ZONE,
    training_cutoff TIMESTAMP WITH TIME ZONE, min_history_days DOUBLE
"""


class InsufficientHistory(MlopsError, ValueError):
    """The bars before the training cutoff cover less history than the training window's minimum."""


@dataclass(frozen=True)
class TrainingWindow:
    """Which bars a training set may use. ``cutoff``: only rows whose label was known by then (UTC; None: every
    bar ingested, the cutoff is then the newest bar's close); everything at or after it is data the version has
    not seen, on which the promotion gate judges its drift. ``min_history_days``: the decisions must span at least
    this many days from the first decision to the cutoff, else the set is refused (a model is not fitted to a few
    days of one market)."""

    cutoff: datetime | None = None
    min_history_days: float = 0.0


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame  # entity, event_timestamp, label_available_at, label, forward_return, features..., split
    features: list[str]
    dataset_hash: str
    window: TrainingWindow = TrainingWindow()  # its cutoff resolved (None: a set stored before cutoffs were)

    @property
    def cutoff(self) -> datetime | None:
        return self.window.cutoff

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def latest_table(model: str) -> str:
    """The table holding a model's latest training set."""
    return f"training.{model}_dataset"


def dataset_id(dataset_hash: str) -> str:
    return dataset_hash[:12]


def immutable_table(dataset_hash: str) -> str:
    """The table that keeps the training set of this content hash, forever."""
    return f"training.dataset_{dataset_id(dataset_hash)}"


def label_sql(spec: ModelSpec, bars: str = BARS_TABLE, *, clock: BarClock | None = None) -> str:
    """Entity rows with their label, from ``bars`` (a table or a parenthesized query over ``raw.market_bars``) of
    ``clock``'s bars (default: hourly, around the clock). The decision is taken ``decision_delay`` after the bar
    closes; the label needs the next ``horizon_bars`` bars and is known when the last of them closes; a volatility
    label is annualized with the clock's bars a year, as the volatility features are."""
    clock = clock or BarClock()
    h, delay, bar = spec.label.horizon_bars, spec.decision_delay_minutes, clock.sql_interval
    if spec.label.kind == "forward_return_sign":
        label = "CASE WHEN forward_return > 0 THEN 1 ELSE 0 END"
        extra = ""
    else:
        label = "forward_vol"
        annualized = f"stddev_samp(r) OVER fwd * sqrt({clock.periods_per_year:g})"
        extra = f""",
               CASE WHEN count(r) OVER fwd = {h} THEN {annualized} END AS forward_vol"""
    return f"""
        WITH bars AS (
            SELECT symbol, "timestamp", close,
                   ln(close / lag(close) OVER w) AS r,
                   ln(lead(close, {h}) OVER w / close) AS forward_return,
                   lead("timestamp", {h}) OVER w + {bar} AS label_available_at
            FROM {bars} AS _bars
            WINDOW w AS (PARTITION BY symbol ORDER BY "timestamp")
        ), labelled AS (
            SELECT *{extra}
            FROM bars
            WINDOW fwd AS (PARTITION BY symbol ORDER BY "timestamp" ROWS BETWEEN 1 FOLLOWING AND {h} FOLLOWING)
        )
        SELECT symbol,
               "timestamp" + {bar} + INTERVAL {delay} MINUTE AS {ENTITY_TIME},
               label_available_at,
               CAST({label} AS DOUBLE) AS label,
               forward_return
        FROM labelled
        WHERE forward_return IS NOT NULL AND {label} IS NOT NULL
        ORDER BY {ENTITY_TIME}, symbol
    """


def assign_splits(frame: pd.DataFrame, fractions: tuple[float, float, float]) -> pd.Series:
    """Split by decision time; purge rows whose label becomes known after the next split starts."""
    times = np.sort(frame[ENTITY_TIME].unique())
    if len(times) < 3:
        raise ValueError(f"need at least 3 distinct decision times to split, got {len(times)}")
    cut_val = times[int(len(times) * fractions[0])]
    cut_test = times[int(len(times) * (fractions[0] + fractions[1]))]
    t, known = frame[ENTITY_TIME], frame["label_available_at"]
    split = pd.Series(np.where(t < cut_val, "train", np.where(t < cut_test, "validation", "test")), index=frame.index)
    purge = ((split == "train") & (known > cut_val)) | ((split == "validation") & (known > cut_test))
    return split.where(~purge, "purged")


def dataset_hash(frame: pd.DataFrame) -> str:
    """sha256 over the full content in canonical row and column order (names and dtypes included)."""
    canonical = frame.sort_values(["symbol", ENTITY_TIME], kind="mergesort").reset_index(drop=True)
    canonical = canonical[sorted(canonical.columns)]
    digest = hashlib.sha256()
    digest.update(repr([(c, str(canonical[c].dtype)) for c in canonical.columns]).encode())
    digest.update(pd.util.hash_pandas_object(canonical, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_training_set(
    conn: duckdb.DuckDBPyConnection, spec: ModelSpec, catalog: FeatureCatalog, window: TrainingWindow | None = None
) -> TrainingSet:
    """The point-in-time set of the decisions whose labels were known by the window's cutoff (default: every
    ingested bar); raises ``InsufficientHistory`` when they span less than its minimum history."""
    spec.check_against(catalog)
    window = window or TrainingWindow()
    newest = last_bar_time(conn)
    if newest is None:
        raise InsufficientHistory(f"no bars in {BARS_TABLE} to train {spec.name!r} on: ingest first")
    cutoff = window.cutoff or newest + catalog.bar_clock.interval
    entities = conn.execute(label_sql(spec, clock=catalog.bar_clock)).fetchdf()
    entities = entities[entities["label_available_at"] <= pd.Timestamp(cutoff)].reset_index(drop=True)
    if entities.empty:
        raise InsufficientHistory(
            f"no labelled rows for {spec.name!r} before the training cutoff {cutoff}: ingest more days than the "
            "label horizon"
        )
    span = pd.Timestamp(cutoff) - entities[ENTITY_TIME].min()
    if span < pd.Timedelta(days=window.min_history_days):
        raise InsufficientHistory(
            f"{spec.name}: from its first decision to the training cutoff {cutoff} is {span}, less than the minimum "
            f"history of {window.min_history_days:g} days (training config min_history_days): ingest more days or "
            "lower it"
        )
    views = [catalog.views[name] for name in spec.feature_views]
    frame = get_historical_features(conn, entities, views)
    features = spec.features(catalog)
    frame = frame[["symbol", ENTITY_TIME, "label_available_at", "label", "forward_return", *features]]
    frame["split"] = assign_splits(frame, spec.split_fractions)
    frame = frame[frame["split"] != "purged"].reset_index(drop=True)
    resolved = TrainingWindow(cutoff=cutoff, min_history_days=window.min_history_days)
    return TrainingSet(frame=frame, features=features, dataset_hash=dataset_hash(frame), window=resolved)


def store_training_set(conn: duckdb.DuckDBPyConnection, spec: ModelSpec, data: TrainingSet, *, run_id: str) -> str:
    """Write the latest set (``training.<model>_dataset``), an immutable copy per content hash, and a registry
    row; returns the dataset id (the first 12 hex digits of the hash)."""
    immutable = immutable_table(data.dataset_hash)
    conn.register("_training_set", data.frame)
    try:
        with warehouse.transaction(conn):
            latest = warehouse.quote_table(latest_table(spec.name))
            conn.execute(f"CREATE OR REPLACE TABLE {latest} AS SELECT * FROM _training_set")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {immutable} AS SELECT * FROM _training_set")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {DATASET_REGISTRY} ({_REGISTRY_COLUMNS})")
            # a registry written before training cutoffs were recorded
            for column, kind in (("training_cutoff", "TIMESTAMPTZ"), ("min_history_days", "DOUBLE")):
                conn.execute(f"ALTER TABLE {DATASET_REGISTRY} ADD COLUMN IF NOT EXISTS {column} {kind}")
            counts = data.frame["split"].value_counts()
            conn.execute(
                f"INSERT INTO {DATASET_REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?, ?)",
                [
                    dataset_id(data.dataset_hash),
                    data.dataset_hash,
                    spec.name,
                    immutable,
                    len(data.frame),
                    int(counts.get("train", 0)),
                    int(counts.get("validation", 0)),
                    int(counts.get("test", 0)),
                    data.frame[ENTITY_TIME].min(),
                    data.frame[ENTITY_TIME].max(),
                    json.dumps(data.features),
                    json.dumps(spec.feature_views),
                    spec.label.model_dump_json(),
                    run_id,
                    data.window.cutoff,
                    data.window.min_history_days,
                ],
            )
    finally:
        conn.unregister("_training_set")
    return dataset_id(data.dataset_hash)


def load_training_set(conn: duckdb.DuckDBPyConnection, spec: ModelSpec) -> TrainingSet:
    """The latest stored set of a model, re-hashed: a content change since it was stored is an error."""
    rows = _registry_rows(conn, "WHERE model = ?", [spec.name])
    if not rows:
        raise NotFound(f"no stored training set for {spec.name!r}: materialize training/{spec.name}_dataset")
    table, stored_hash = rows[0]["table_name"], rows[0]["dataset_hash"]
    frame = conn.execute(f"SELECT * FROM {warehouse.quote_table(table)}").fetchdf()
    actual = dataset_hash(frame)
    if actual != stored_hash:
        raise ValueError(f"{table} has hash {actual}, registered as {stored_hash}: the stored dataset was modified")
    return TrainingSet(
        frame=frame,
        features=json.loads(rows[0]["features"]),
        dataset_hash=actual,
        window=TrainingWindow(
            cutoff=rows[0].get("training_cutoff"), min_history_days=rows[0].get("min_history_days") or 0.0
        ),
    )


def list_datasets(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every stored training set's registry row, newest first ([] before the first one)."""
    return _registry_rows(conn, "", [])


def dataset_record(conn: duckdb.DuckDBPyConnection, dataset_id: str) -> dict[str, Any] | None:
    """The registry row of one stored training set (its newest, if stored more than once), else None."""
    rows = _registry_rows(conn, "WHERE dataset_id = ?", [dataset_id])
    return rows[0] if rows else None


def dataset_by_hash(conn: duckdb.DuckDBPyConnection, dataset_hash: str) -> dict[str, Any] | None:
    """The registry row of the training set with this content hash (a model version's ``dataset_hash`` tag)."""
    rows = _registry_rows(conn, "WHERE dataset_hash = ?", [dataset_hash])
    return rows[0] if rows else None


def split_range(conn: duckdb.DuckDBPyConnection, dataset_hash: str, split: str) -> tuple[datetime, datetime] | None:
    """The first and last decision time of one split of the stored set with this content hash (None when that
    set is not stored, or the split is empty)."""
    row = dataset_by_hash(conn, dataset_hash)
    if row is None or not warehouse.table_exists(conn, row["table_name"]):
        return None
    first, last = conn.execute(
        f"SELECT min({ENTITY_TIME}), max({ENTITY_TIME}) FROM {warehouse.quote_table(row['table_name'])} "
        "WHERE split = ?",
        [split],
    ).fetchone() or (None, None)
    return None if first is None or last is None else (first, last)


def _registry_rows(conn: duckdb.DuckDBPyConnection, where: str, params: list[object]) -> list[dict[str, Any]]:
    if not warehouse.table_exists(conn, DATASET_REGISTRY):
        return []
    return warehouse.fetch_dicts(conn, f"SELECT * FROM {DATASET_REGISTRY} {where} ORDER BY created_at DESC", params)
