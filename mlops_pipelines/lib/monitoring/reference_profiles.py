"""Reference windows and their profiles: the rows a drift report compares, read from the feature views.

A reference profile holds each feature's sorted values and category counts over a window (``drift.ReferenceProfile``).
Profiles are cached on disk per view (``cache_dir/<view table>/<window>-<fingerprint>.npz``, the 3 newest kept),
keyed by a fingerprint of the window's rows, so the 24 hourly runs of a day, and the models sharing a view, read
and sort the reference once; a re-materialized view changes the fingerprint, so a stale profile is never used.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
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


def hour_fingerprints(
    conn: duckdb.DuckDBPyConnection, view: FeatureView, start: datetime, end: datetime
) -> dict[str, np.ndarray]:
    """Per epoch hour of the window holding rows: its row count and an order-independent hash of its rows
    (``hours``, ``counts``, ``digests``). A re-materialized hour changes its digest, so a cached profile is never
    used for data it was not computed from, and an incremental rebuild re-reads exactly the hours that changed."""
    event = quote_ident(view.event_time)
    rows = conn.execute(
        f"SELECT CAST(floor(epoch({event}) / {calibration.HOUR_S}) AS BIGINT) AS hour_, count(*), "
        f"CAST(sum(hash(row_)::HUGEINT) AS VARCHAR) FROM {quote_table(view.table)} AS row_ "
        f"WHERE {event} >= ? AND {event} < ? GROUP BY hour_ ORDER BY hour_",
        [start, end],
    ).fetchall()
    return {
        "hours": np.array([r[0] for r in rows], dtype=np.int64),
        "counts": np.array([r[1] for r in rows], dtype=np.int64),
        "digests": np.array([r[2] for r in rows], dtype=str),
    }


def window_fingerprint(view: FeatureView, prints: dict[str, np.ndarray]) -> str:
    """The window's content: its per-hour row counts and digests."""
    triples = zip(prints["hours"], prints["counts"], prints["digests"], strict=True)
    text = ";".join(f"{h}:{c}:{d}" for h, c, d in triples)
    return hashlib.sha256(f"{view.table}:{text}".encode()).hexdigest()[:16]


PROFILE_FORMAT = "c4"  # part of the cache key: profiles of an older format (c3: no plane lineage) are not read
# A folded profile keeps its base's principal plane while the window the plane was fitted on covers at least this
# share of the new window's hours; below it, the plane is refitted on the new window (every row read once).
REFIT_BELOW = 0.5


def view_profile(
    conn: duckdb.DuckDBPyConnection,
    view: FeatureView,
    start: datetime,
    end: datetime,
    cache_dir: Path | None,
    variance_explained: float = 0.65,
) -> drift.ReferenceProfile:
    """Every feature of one view over [start, end): from ``cache_dir`` when this exact window content was
    profiled before (by any model: they share views), else built and cached (3 newest kept). Besides the sorted
    values and category counts, the profile holds each column's values per hour (the null distributions of
    ``calibration``) and the view's principal plane (the multivariate signal).

    A new reference window (once a day: it slides by a day) is folded from the newest cached profile of the view
    (``build_view_profile``): its hours whose content is unchanged (same per-hour fingerprint) are kept, the others
    dropped, and only the new or changed hours are read and sorted. The result equals a profile built from scratch
    (to floating-point summation order) but for the view's principal plane: the base's is kept, with the reference
    rows' errors under it, while the window it was fitted on covers at least ``REFIT_BELOW`` of the new one (then
    it is refitted, and every row of the window read once). Keeping it is what spares reading every reference row
    each day; the null and the current window are measured against the same plane, so the calibration holds."""
    path, base = None, None
    prints = hour_fingerprints(conn, view, start, end)
    if cache_dir is not None:
        suffix = f"{PROFILE_FORMAT}-{variance_explained:g}"
        key = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}-{window_fingerprint(view, prints)}-{suffix}"
        path = cache_dir / view.table / f"{key}.npz"
        if path.exists():
            return drift.ReferenceProfile.load(path)
        older = sorted(path.parent.glob(f"*-{suffix}.npz"), key=lambda p: p.stat().st_mtime)
        base = drift.ReferenceProfile.load(older[-1]) if older else None
    profile = build_view_profile(conn, view, start, end, prints, variance_explained, base)
    if path is not None:
        profile.save(path)
        for stale in sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime)[:-3]:
            stale.unlink(missing_ok=True)
    return profile


def _hour_slots(start: datetime, end: datetime) -> tuple[int, int]:
    first = int(start.timestamp() // calibration.HOUR_S)
    return first, calibration.slot_count(first, int(-(-end.timestamp() // calibration.HOUR_S)))


def _reusable_slots(
    prints: dict[str, np.ndarray], base: drift.ReferenceProfile | None, first: int, slots: int
) -> np.ndarray:
    """Per hour slot of the new window: whether ``base`` holds that hour with the same content."""
    reusable = np.zeros(slots, dtype=bool)
    old = base.provenance if base is not None else {}
    if not {"hours", "counts", "digests", "first_hour"} <= set(old):
        return reusable
    same = {(int(h), int(c), str(d)) for h, c, d in zip(old["hours"], old["counts"], old["digests"], strict=True)}
    for h, c, d in zip(prints["hours"], prints["counts"], prints["digests"], strict=True):
        if 0 <= h - first < slots and (int(h), int(c), str(d)) in same:
            reusable[h - first] = True
    return reusable


def _hour_ranges(slots_wanted: np.ndarray, first: int) -> list[tuple[datetime, datetime]]:
    """Contiguous runs of wanted hour slots, as [start, end) datetimes."""
    edges = np.diff(np.concatenate([[0], slots_wanted.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    as_time = lambda slot: datetime.fromtimestamp((first + int(slot)) * calibration.HOUR_S, tz=UTC)  # noqa: E731
    return [(as_time(a), as_time(b)) for a, b in zip(starts, stops, strict=True)]


def _read(
    conn: duckdb.DuckDBPyConnection, view: FeatureView, columns: list[str], ranges: list[tuple[datetime, datetime]]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``columns`` (numeric as float with NaN, text as object with None) and each row's epoch hour, for the rows
    whose event time is in one of ``ranges``."""
    if not ranges:
        empty = {c: np.array([], dtype=float if view.schema_[c] == "DOUBLE" else object) for c in columns}
        return empty, np.array([], dtype=np.int64)
    event = quote_ident(view.event_time)
    where = " OR ".join(f"({event} >= ? AND {event} < ?)" for _ in ranges)
    selected = ", ".join([*(quote_ident(c) for c in columns), f"epoch({event})"])
    raw = conn.execute(
        f"SELECT {selected} FROM {quote_table(view.table)} WHERE {where}", [t for r in ranges for t in r]
    ).fetchnumpy()
    names = list(raw)
    arrays = {
        c: _unmasked(raw[n], float if view.schema_[c] == "DOUBLE" else object)
        for c, n in zip(columns, names, strict=False)
    }
    hours = (np.asarray(np.ma.getdata(raw[names[-1]]), dtype=float) // calibration.HOUR_S).astype(np.int64)
    return arrays, hours


def _merge_sorted(a: np.ndarray, a_tag: np.ndarray, b: np.ndarray, b_tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted arrays (each value with a tag: its hour slot) merged in one pass."""
    at = np.searchsorted(a, b, side="right") + np.arange(len(b))
    from_b = np.zeros(len(a) + len(b), dtype=bool)
    from_b[at] = True
    values, tags = np.empty(len(from_b)), np.empty(len(from_b), dtype=a_tag.dtype)
    values[from_b], values[~from_b] = b, a
    tags[from_b], tags[~from_b] = b_tag, a_tag
    return values, tags


def _sorted_with_slots(
    values: np.ndarray, slot: np.ndarray, keep_base: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The finite ``values`` sorted, with each one's hour slot; merged into ``keep_base`` (already sorted) if given."""
    finite = np.isfinite(values)
    values, slot = values[finite], slot[finite]
    order = np.argsort(values, kind="stable")
    values, slot = values[order], slot[order].astype(np.int32)
    if keep_base is None:
        return values, slot
    return _merge_sorted(keep_base[0], keep_base[1], values, slot)


def build_view_profile(
    conn: duckdb.DuckDBPyConnection,
    view: FeatureView,
    start: datetime,
    end: datetime,
    prints: dict[str, np.ndarray],
    variance_explained: float,
    base: drift.ReferenceProfile | None = None,
) -> drift.ReferenceProfile:
    """The view's profile over [start, end), folded from ``base`` where its hours are unchanged (see
    ``view_profile``), else from the warehouse alone."""
    numeric = [f for f in view.features if view.schema_[f] == "DOUBLE"]
    categorical = [f for f in view.features if f not in numeric]
    first, slots = _hour_slots(start, end)
    reusable = _reusable_slots(prints, base, first, slots)
    if base is None or not reusable.any():
        base, reusable = None, np.zeros(slots, dtype=bool)
    plane = base.reconstruction.get(view.name) if base is not None else None
    if plane is not None and plane.coverage(first, slots) < REFIT_BELOW:
        plane = None  # fitted on a window that is mostly gone: refitted on this one's rows
    # only the new or changed hours are read, unless the principal plane is refitted (on every row of the window)
    fresh_ranges = _hour_ranges(~reusable, first) if base else [(start, end)]
    arrays, hours = _read(conn, view, numeric, fresh_ranges if plane is not None else [(start, end)])
    texts, text_hours = _read(conn, view, categorical, fresh_ranges)
    slot = hours - first
    fresh = ~reusable[np.clip(slot, 0, max(slots - 1, 0))] if slots else np.ones(len(slot), dtype=bool)

    shift, kept_slot = 0, np.zeros(0, dtype=bool)
    if base is not None:  # per hour slot of the base's window: whether its values are kept (and where they go)
        shift = int(base.provenance["first_hour"][0]) - first
        moved = np.arange(len(base.provenance["reused_slots"])) + shift
        kept_slot = np.zeros(len(moved), dtype=bool)
        inside = (moved >= 0) & (moved < slots)
        kept_slot[inside] = reusable[moved[inside]]

    def kept(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The base's sorted values of ``name`` in the hours reused, with their slots in the new window."""
        if base is None:
            return None
        old_slots = base.provenance[f"slots/{name}"]
        keep = kept_slot[old_slots]
        return base.numeric[name][keep], (old_slots[keep] + shift).astype(np.int32, copy=False)

    def one(name: str) -> tuple[np.ndarray, np.ndarray, calibration.HourlyAggregates | None]:
        """The column's sorted values, their hour slots and its per-hour aggregates (the count, sum and sum of
        squares of the hours reused taken from the base's, the bins counted again: their edges moved)."""
        new_values, new_slots = arrays[name][fresh], slot[fresh]
        values, value_slots = _sorted_with_slots(new_values, new_slots, kept(name))
        if not len(values):
            return values, value_slots, None
        edges = drift.psi_edges(values)
        if base is None or name not in base.hourly:
            return values, value_slots, calibration.HourlyAggregates.of_sorted(values, value_slots, edges, first, slots)
        finite = np.isfinite(new_values)
        young = calibration.HourlyAggregates.of(new_slots + first, new_values, np.where(finite, 0, -1), 1, first, slots)
        moments = base.hourly[name].folded(reusable, young)
        bins = calibration.slot_bins(values, value_slots, edges, slots)
        return values, value_slots, replace(moments, bins=bins)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        columns = dict(zip(numeric, pool.map(one, numeric), strict=True))
    sorted_columns = {name: values for name, (values, _, _) in columns.items()}
    provenance = {f"slots/{name}": slots_ for name, (_, slots_, _) in columns.items()}
    provenance.update(prints)
    provenance["first_hour"] = np.array([first], dtype=np.int64)
    provenance["reused_slots"] = reusable  # the hours taken from the cached profile (for the operator and tests)
    hourly = {name: agg for name, (_, _, agg) in columns.items() if agg is not None}
    counts = {}
    for name, values in texts.items():
        labels, by_slot = _category_slots(values, text_hours - first, slots)
        if base is not None and name in base.hourly:
            labels, by_slot = _fold_categories(base, name, first, slots, reusable, labels, by_slot)
        counts[name] = pd.Series(by_slot.sum(axis=0).astype(np.int64), index=labels, dtype="int64")
        if len(labels):
            zeros = np.zeros(slots)
            hourly[name] = calibration.HourlyAggregates(first, by_slot.sum(axis=1), zeros, zeros, by_slot, 0.0)
    if plane is not None:  # the base's plane kept: its errors in the reused hours, the new hours' computed
        plane = plane.refolded(arrays, hours, first, slots, reusable)
    else:
        plane = calibration.Reconstruction.fit(arrays, hours, first, slots, variance_explained=variance_explained)
    planes = {view.name: plane} if plane is not None else {}
    rows = int(prints["counts"].sum())
    return drift.ReferenceProfile(rows, sorted_columns, counts, hourly, planes, provenance)


def _category_slots(values: np.ndarray, slot: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The categories present (as text, sorted) and their counts per hour slot (slots x categories)."""
    codes, uniques = pd.factorize(values)  # missing -> -1
    labels = np.array([str(u) for u in uniques], dtype=str)
    order = np.argsort(labels, kind="stable")
    index = np.where(codes >= 0, np.argsort(order)[np.maximum(codes, 0)], -1).astype(np.int64)
    keep = (index >= 0) & (slot >= 0) & (slot < slots)
    flat = np.bincount(slot[keep] * len(labels) + index[keep], minlength=slots * len(labels))
    return labels[order], flat.reshape(slots, len(labels)).astype(float)


def _fold_categories(
    base: drift.ReferenceProfile,
    name: str,
    first: int,
    slots: int,
    reusable: np.ndarray,
    labels: np.ndarray,
    by_slot: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The fresh hours' category counts (``labels``, ``by_slot``) plus the base's in the hours reused."""
    old = base.hourly[name]
    old_labels = base.categorical[name].index.to_numpy(dtype=str)
    moved = np.arange(len(old.count)) + old.start_hour - first
    keep = (moved >= 0) & (moved < slots)
    keep[keep] = reusable[moved[keep]]
    union = np.union1d(old_labels, labels)
    out = np.zeros((slots, len(union)))
    out[:, np.searchsorted(union, labels)] += by_slot
    out[np.ix_(moved[keep], np.searchsorted(union, old_labels))] += old.bins[keep]
    present = out.sum(axis=0) > 0
    return union[present], out[:, present]


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
