"""Reference windows and their profiles: the rows a drift report compares, read from the feature views.

A reference profile holds each feature's sorted values and category counts over a window (``drift.ReferenceProfile``).
Profiles are cached on disk per view (``cache_dir/<view table>/<window>-<fingerprint>.npz``, the 3 newest kept),
keyed by a fingerprint of the window's rows, so the 24 hourly runs of a day, and the models sharing a view, read
and sort the reference once; a re-materialized view changes the fingerprint, so a stale profile is never used.
"""

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.core.warehouse import quote_ident, quote_table
from mlops_pipelines.lib.features.feature_views import FeatureCatalog, FeatureView
from mlops_pipelines.lib.monitoring import calibration, drift
from mlops_pipelines.lib.training.model_specs import ModelSpec


def view_columns(
    conn: duckdb.DuckDBPyConnection, view: FeatureView, columns: list[str], start: datetime, end: datetime
) -> dict[str, np.ndarray]:
    """Columns of the view's rows whose event time is in [start, end), as arrays (numeric ones as float with
    NaN for NULL): no DataFrame is built, since drift works column by column."""
    selected, event = ", ".join(quote_ident(c) for c in columns), quote_ident(view.event_time)
    arrays = conn.execute(
        f"SELECT {selected} FROM {quote_table(view.table)} WHERE {event} >= ? AND {event} < ?",
        [start, end],
    ).fetchnumpy()
    return {c: _unmasked(v, float if view.schema_[c] == "DOUBLE" else object) for c, v in arrays.items()}


def _unmasked(values: object, dtype: type) -> np.ndarray:
    """DuckDB returns a masked array when a column has NULLs: NaN (numbers) or None (text) in their place."""
    mask = np.ma.getmaskarray(values)  # type: ignore[arg-type]
    out = np.asarray(np.ma.getdata(values), dtype=dtype)  # type: ignore[arg-type]
    if mask.any():
        out = out.copy()
        out[mask] = np.nan if dtype is float else None
    return out


def model_columns(spec: ModelSpec, catalog: FeatureCatalog, view: FeatureView) -> list[str]:
    return [f for f in view.features if f in spec.features(catalog) or f == "sector"]


Memo = dict[tuple[Any, ...], Any]  # what one run already read, for the next model


def feature_frame(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    start: datetime,
    end: datetime,
    memo: Memo | None = None,
) -> pd.DataFrame:
    """The model's features for rows whose event time is in [start, end), one view at a time (no join needed:
    drift is per feature). With ``memo``, each view's window is read once for every model that uses it."""
    columns: dict[str, np.ndarray] = {}
    for name, view_data in view_windows(conn, spec, catalog, start, end, memo).items():
        columns.update({c: view_data[c] for c in model_columns(spec, catalog, catalog.views[name])})
    return pd.DataFrame(columns)


def reference_window(window_start: datetime, reference: timedelta) -> tuple[datetime, datetime]:
    """The reference ends at the start of the current window's first UTC day, so that the 24 hourly runs of a
    day share one reference window (and its cached profile)."""
    end = window_start.replace(hour=0, minute=0, second=0, microsecond=0)
    return end - reference, end


def window_fingerprint(conn: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime) -> str:
    """Row count and an order-independent hash of the view's rows in the window: a re-materialized view changes
    it, so a cached profile is never used for data it was not computed from."""
    event = quote_ident(view.event_time)
    [(count, digest)] = conn.execute(
        f"SELECT count(*), coalesce(sum(hash(row_)::HUGEINT), 0) FROM {quote_table(view.table)} AS row_ "
        f"WHERE {event} >= ? AND {event} < ?",
        [start, end],
    ).fetchall()
    return hashlib.sha256(f"{view.table}:{count}:{digest}".encode()).hexdigest()[:16]


PROFILE_FORMAT = "c2"  # part of the cache key: profiles of an older format (no hourly aggregates) are not read


def view_profile(
    conn: duckdb.DuckDBPyConnection,
    view: FeatureView,
    start: datetime,
    end: datetime,
    cache_dir: Path | None,
    variance_explained: float = 0.65,
) -> drift.ReferenceProfile:
    """Every feature of one view over [start, end): from ``cache_dir`` when this exact window content was
    profiled before (by any model: they share views), else from the warehouse, then cached (3 newest kept).
    Besides the sorted values and category counts, the profile holds each column's values per hour (the null
    distributions of ``calibration``) and the view's principal plane (the multivariate signal)."""
    path = None
    if cache_dir is not None:
        fingerprint = window_fingerprint(conn, view, start, end)
        key = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}-{fingerprint}-{PROFILE_FORMAT}-{variance_explained:g}"
        path = cache_dir / view.table / f"{key}.npz"
        if path.exists():
            return drift.ReferenceProfile.load(path)
    numeric = [f for f in view.features if view.schema_[f] == "DOUBLE"]
    categorical = [f for f in view.features if f not in numeric]
    event = quote_ident(view.event_time)
    where = f"FROM {quote_table(view.table)} WHERE {event} >= ? AND {event} < ?"
    selected = ", ".join([*(quote_ident(c) for c in [*numeric, *categorical]), f"epoch({event})"])
    raw = conn.execute(f"SELECT {selected} {where}", [start, end]).fetchnumpy()
    names = list(raw)
    arrays = {c: _unmasked(raw[n], float) for c, n in zip(numeric, names, strict=False)}
    texts = {c: _unmasked(raw[n], object) for c, n in zip(categorical, names[len(numeric) :], strict=False)}
    hours = (np.asarray(np.ma.getdata(raw[names[-1]]), dtype=float) // calibration.HOUR_S).astype(np.int64)
    first, slots = (
        int(start.timestamp() // calibration.HOUR_S),
        calibration.slot_count(
            int(start.timestamp() // calibration.HOUR_S), int(-(-end.timestamp() // calibration.HOUR_S))
        ),
    )
    sorted_columns = drift.sorted_finite(arrays)
    hourly: dict[str, calibration.HourlyAggregates] = {}
    for name, values in arrays.items():
        finite = np.isfinite(values)
        ref = sorted_columns[name]
        index = np.full(len(values), -1, dtype=np.int64)
        if len(ref):
            edges = drift.psi_edges(ref)
            index[finite] = np.searchsorted(edges, values[finite], side="right")
            hourly[name] = calibration.HourlyAggregates.of(
                hours, np.where(finite, values, 0.0), index, len(edges) + 1, first, slots
            )
    counts = {}
    for name, values in texts.items():
        codes, uniques = pd.factorize(values)  # missing -> -1
        labels = np.array([str(u) for u in uniques], dtype=str)
        order = np.argsort(labels, kind="stable")
        index = np.where(codes >= 0, np.argsort(order)[np.maximum(codes, 0)], -1).astype(np.int64)
        categories = labels[order]
        counts[name] = pd.Series(
            np.bincount(index[index >= 0], minlength=len(categories)), index=categories, dtype="int64"
        )
        if len(categories):
            hourly[name] = calibration.HourlyAggregates.of(hours, None, index, len(categories), first, slots)
    planes = {}
    plane = calibration.Reconstruction.fit(arrays, hours, first, slots, variance_explained=variance_explained)
    if plane is not None:
        planes[view.name] = plane
    profile = drift.ReferenceProfile(
        rows=len(hours),
        numeric=sorted_columns,
        categorical=counts,
        hourly=hourly,
        reconstruction=planes,
    )
    if path is not None:
        profile.save(path)
        for stale in sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime)[:-3]:
            stale.unlink(missing_ok=True)
    return profile


def reference_profile(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    start: datetime,
    end: datetime,
    cache_dir: Path | None,
    memo: Memo | None = None,
    variance_explained: float = 0.65,
) -> drift.ReferenceProfile:
    """The model's reference profile: its features' part of each of its views' profiles, with the views'
    principal planes. (Views share the entity and time grid, so their row counts agree; the largest is kept.)"""
    memo = {} if memo is None else memo
    profiles = []
    for name in spec.feature_views:
        view = catalog.views[name]
        key = ("profile", view.table, start, end, variance_explained)
        if key not in memo:
            memo[key] = view_profile(conn, view, start, end, cache_dir, variance_explained)
        profiles.append((view, memo[key]))
    wanted = {c for view, _ in profiles for c in model_columns(spec, catalog, view)}
    return drift.ReferenceProfile(
        rows=max((p.rows for _, p in profiles), default=0),
        numeric={c: v for _, p in profiles for c, v in p.numeric.items() if c in wanted},
        categorical={c: v for _, p in profiles for c, v in p.categorical.items() if c in wanted},
        hourly={c: v for _, p in profiles for c, v in p.hourly.items() if c in wanted},
        reconstruction={k: v for _, p in profiles for k, v in p.reconstruction.items()},
    )


def view_windows(
    conn: duckdb.DuckDBPyConnection,
    spec: ModelSpec,
    catalog: FeatureCatalog,
    start: datetime,
    end: datetime,
    memo: Memo | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Each of the model's views' columns (all of the view's features) for rows whose event time is in
    [start, end): what the multivariate signal reconstructs. Read once per run with ``memo``."""
    memo = {} if memo is None else memo
    out = {}
    for name in spec.feature_views:
        view = catalog.views[name]
        key = ("columns", view.table, start, end)
        if key not in memo:
            memo[key] = view_columns(conn, view, list(view.features), start, end)
        out[name] = memo[key]
    return out
