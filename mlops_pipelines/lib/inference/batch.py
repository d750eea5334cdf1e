"""Batch inference: each symbol's decision of one hour, scored by the model's PRODUCTION version, and the table
that keeps the scores: ``inference.batch_predictions`` (owned here: its name, columns, writes and reads).

The decisions are the monitoring ones (``prediction_log.decision_rows``: one per symbol with a bar closing just
before the hour's decision time), their features point-in-time as of the decision (``get_historical_features``:
nothing a live system could not have seen then). The version is the audit log's ``production`` holder, loaded
through ``load_for_inference`` (governance record, feature graph, artifact sha256): a version trained on another
feature graph fails the run with ``FeatureGraphMismatch``, the same message the serving API and monitoring give.

A decision whose features are missing for a whole view (no row within the view's TTL) is not scored: it is
listed with that reason, never answered from stale or absent features.

Written per (model, partition) in one transaction with the served prediction log (role ``batch``, request id
``batch:<model>:<partition>``): a re-run replaces both, so each decision is in each table once.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME, get_historical_features
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.model_loading import LoadedModel, load_for_inference
from mlops_pipelines.lib.monitoring import served_predictions
from mlops_pipelines.lib.monitoring.prediction_log import decision_rows
from mlops_pipelines.lib.training import training
from mlops_pipelines.lib.training.model_specs import ModelSpec

BATCH_TABLE = "inference.batch_predictions"
DDL = f"""
    model VARCHAR NOT NULL, partition_key VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
    {ENTITY_TIME} TIMESTAMP WITH TIME ZONE NOT NULL, version VARCHAR NOT NULL, feature_graph_hash VARCHAR,
    prediction DOUBLE, scored_at TIMESTAMP WITH TIME ZONE, run_id VARCHAR
"""  # one row per model, partition and symbol
ROLE = "batch"  # the role of these rows in monitoring.served_predictions
ALIAS = "production"


class NoProductionVersion(MlopsError, LookupError):
    """The model has no PRODUCTION version: nothing to score with (the hour is skipped, not failed)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"{model} has no PRODUCTION version: batch inference skipped (promote a version, then re-run the hour)"
        )
        self.model = model


def request_id(model: str, partition_key: str) -> str:
    """The served-log request id of one model's batch over one partition (replaced by a re-run)."""
    return f"batch:{model}:{partition_key}"


@dataclass(frozen=True)
class BatchRun:
    """One model's batch over one hour: what was scored, and what could not be, with why."""

    model: str
    version: str
    feature_graph_hash: str
    partition_key: str
    start: datetime
    end: datetime
    scored: pd.DataFrame  # symbol, event_timestamp, prediction
    unscored: pd.DataFrame  # symbol, event_timestamp, reason


def score_hour(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    loaded: LoadedModel,
    start: datetime,
    end: datetime,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decisions in [start, end) with point-in-time features, scored; and the ones without features."""
    decisions = decision_rows(conn, spec, start, end)
    views = [catalog.views[name] for name in spec.feature_views]
    frame = get_historical_features(conn, decisions, views)
    missing = pd.Series("", index=frame.index, dtype=object)
    for view in views:
        used = [f for f in view.features if f in loaded.features]
        if used:
            absent = frame[used].isna().all(axis=1)
            missing[absent] = missing[absent] + f"no {view.name}@{view.version} row within its TTL; "
    bad = missing != ""
    unscored = frame.loc[bad, ["symbol", ENTITY_TIME]].assign(reason=missing[bad].str.rstrip("; "))
    good = frame.loc[~bad].reset_index(drop=True)
    predictions = training.predict(loaded.booster, good, loaded.features) if len(good) else np.array([])
    scored = good[["symbol", ENTITY_TIME]].assign(prediction=predictions)
    order = ["symbol", ENTITY_TIME]
    return scored.sort_values(order).reset_index(drop=True), unscored.sort_values(order).reset_index(drop=True)


def write(conn: duckdb.DuckDBPyConnection, run: BatchRun, *, run_id: str) -> None:
    """The batch's rows in ``inference.batch_predictions`` and ``monitoring.served_predictions`` (role
    ``batch``), replacing an earlier run's of the same model and partition, all or nothing."""
    now = datetime.now(UTC)
    rows = run.scored.assign(
        model=run.model,
        partition_key=run.partition_key,
        version=run.version,
        feature_graph_hash=run.feature_graph_hash,
        scored_at=now,
        run_id=run_id,
    )
    rows["scored_at"] = pd.to_datetime(rows["scored_at"], utc=True).astype("datetime64[us, UTC]")
    rid = request_id(run.model, run.partition_key)
    entries = [
        served_predictions.Served(
            request_id=rid,
            item=item,
            model=run.model,
            version=run.version,
            alias=ALIAS,
            role=ROLE,
            symbol=str(symbol),
            features_as_of=pd.Timestamp(decided).isoformat(),  # point-in-time: the features as of the decision
            prediction=float(prediction),
            latency_ms=0.0,
            answered_at=now.isoformat(),
        )
        for item, (symbol, decided, prediction) in enumerate(
            zip(run.scored["symbol"], run.scored[ENTITY_TIME], run.scored["prediction"], strict=True)
        )
    ]
    with warehouse.transaction(conn):
        warehouse.replace_rows(
            conn,
            BATCH_TABLE,
            rows,
            where="model = ? AND partition_key = ?",
            params=[run.model, run.partition_key],
            create_sql=DDL,
            own_transaction=False,
        )
        served_predictions.replace_request(conn, rid, entries, own_transaction=False)


def run_batch(
    lifecycle: Lifecycle,
    tracking: Tracking,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    *,
    partition_key: str,
    start: datetime,
    end: datetime,
    run_id: str,
) -> BatchRun:
    """Score the hour [start, end) with the production version and write it (``lifecycle.conn``, read-write).
    ``NoProductionVersion`` when there is none; ``FeatureGraphMismatch`` (and the other refusals of
    ``load_for_inference``) when the version may not be loaded."""
    version = lifecycle.champion(spec.name)
    if version is None:
        raise NoProductionVersion(spec.name)
    loaded = load_for_inference(lifecycle, tracking, spec.name, version, live_graph_hash=catalog.graph_hash())
    scored, unscored = score_hour(lifecycle.conn, spec, catalog, loaded, start, end)
    run = BatchRun(spec.name, version, loaded.feature_graph_hash, partition_key, start, end, scored, unscored)
    write(lifecycle.conn, run, run_id=run_id)
    return run


def partition_rows(conn: duckdb.DuckDBPyConnection, model: str, partition_key: str) -> pd.DataFrame:
    """What the table holds for one model and partition (empty when nothing was written)."""
    if not warehouse.table_exists(conn, BATCH_TABLE):
        return pd.DataFrame(columns=["symbol", ENTITY_TIME, "version", "prediction"])
    return conn.execute(
        f"SELECT symbol, {ENTITY_TIME}, version, prediction FROM {BATCH_TABLE} "
        "WHERE model = ? AND partition_key = ? ORDER BY symbol",
        [model, partition_key],
    ).fetchdf()
