"""Online lookup latency, p50/p99: 1 entity and 100 entities out of 5,000, our online store
(``lib/features/online_store.py``: one wide SQLite row per entity) against Feast's SQLite online store
(``SqliteOnlineStore``: one row per entity and feature, protobuf values) on the same data in the same run.
Targets for ours: p99 < 0.2 ms for 1 entity, p99 < 2 ms for 100 entities.

    .venv/bin/python -m benchmarks.bench_online_store [--entities 5000] [--single 3000] [--batch 500]

Both sides return the full vector of every requested entity as Python values; Feast's ``online_read`` is
called directly (no FeatureStore, registry or feature server in the path), the cheapest way to use it.
"""

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks._common import percentiles
from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.online_store import OnlineStoreReader, write_snapshot

try:
    from feast import Entity, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.type_map import feast_value_type_to_python_type
    from feast.types import Float64, String, UnixTimestamp
    from feast.utils import _convert_arrow_to_proto
except ModuleNotFoundError as exc:  # Feast is the baseline only: the `bench` extra
    raise SystemExit("this benchmark needs Feast: .venv/bin/pip install -e '.[bench]'") from exc

KEY = "entity_key"
SECTORS = ("technology", "financials", "energy", "healthcare", "industrials", "consumer", "utilities")
WARMUP = 200
WIDTHS = (14, 9, 12, 12, 12, 12, 16, 30)

FeastRow = tuple[datetime | None, dict[str, Any] | None]


def snapshot_frame(catalog: FeatureCatalog, n_entities: int, seed: int) -> pd.DataFrame:
    """A frame shaped like ``feature_store.latest_vectors``: entity key, every view's features, then
    ``<view>__event_ts``, with random values (whole-hour event times, like bar closes)."""
    rng = np.random.default_rng(seed)
    now = pd.Timestamp("2027-01-01", tz="UTC")
    columns: dict[str, Any] = {KEY: [f"SYM{i:05d}" for i in range(n_entities)]}
    for view in catalog.views.values():
        for feature in view.features:
            dtype = view.schema_[feature]
            if dtype == "DOUBLE":
                columns[feature] = rng.standard_normal(n_entities)
            elif dtype == "VARCHAR":
                columns[feature] = rng.choice(np.array(SECTORS, dtype=object), n_entities)
            else:
                raise ValueError(f"{view.name}.{feature}: no synthetic generator for {dtype}")
        hours_ago = pd.to_timedelta(rng.integers(0, 3, n_entities), unit="h")
        columns[f"{view.name}__event_ts"] = (now - hours_ago).astype("datetime64[us, UTC]")
    return pd.DataFrame(columns)


class FeastOnline:
    """A Feast online store (SQLite by default; ``bench_online_store_redis`` passes Redis), set up in-process with
    the minimal objects it needs (no `feast apply`), holding ``frame`` written by Feast's own conversion."""

    def __init__(
        self, tmp: Path, frame: pd.DataFrame, online_store: dict[str, Any] | None = None, store: Any = None
    ) -> None:
        self.config = RepoConfig(
            project="bench",
            provider="local",
            registry=str(tmp / "feast_registry.db"),
            online_store=online_store or {"type": "sqlite", "path": str(tmp / "feast_online.db")},
            entity_key_serialization_version=3,
        )
        feature_columns = [c for c in frame.columns if c != KEY]
        ts_columns = [c for c in feature_columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
        # Feast keeps one event (and created) time per entity row: the newest of the views' event times.
        rows = frame.assign(event_ts=frame[ts_columns].max(axis=1), created_ts=frame[ts_columns].max(axis=1))
        source_path = tmp / "feast_source.parquet"
        rows.to_parquet(source_path)
        entity = Entity(name="symbol", join_keys=[KEY], value_type=ValueType.STRING)
        feast_type = {"f": Float64, "O": String, "M": UnixTimestamp}
        self.view = FeatureView(
            name="market_features",
            entities=[entity],
            ttl=timedelta(hours=3),
            schema=[Field(name=c, dtype=feast_type[frame[c].dtype.kind]) for c in feature_columns],
            source=FileSource(path=str(source_path), timestamp_field="event_ts", created_timestamp_column="created_ts"),
        )
        self.store = store or SqliteOnlineStore()
        self.store.update(
            self.config,
            tables_to_delete=[],
            tables_to_keep=[self.view],
            entities_to_delete=[],
            entities_to_keep=[entity],
            partial=False,
        )
        # Feast's own conversion, the one its materialization uses (arrow columns -> ValueProtos).
        table = pa.Table.from_pandas(rows, preserve_index=False)
        data = _convert_arrow_to_proto(table, self.view, {KEY: ValueType.STRING})
        self.store.online_write_batch(self.config, self.view, data, progress=None)
        self.keys = {row[0].entity_values[0].string_val: row[0] for row in data}

    def read(self, entity_keys: Sequence[Any]) -> list[FeastRow]:
        return [
            (ts, None if values is None else {k: feast_value_type_to_python_type(v) for k, v in values.items()})
            for ts, values in self.store.online_read(self.config, self.view, list(entity_keys))
        ]


def latencies(fn: Callable[[Any], object], requests: Sequence[Any]) -> list[float]:
    """Wall time of every request after the first ``WARMUP`` (which are run but not recorded)."""
    samples = []
    for i, request in enumerate(requests):
        start = time.perf_counter()
        fn(request)
        elapsed = time.perf_counter() - start
        if i >= WARMUP:
            samples.append(elapsed)
    return samples


def check_same(ours: dict[str, Any] | None, feast: FeastRow, key: str) -> None:
    """The two stores must return the same vector (ours keeps event times as ISO-8601 text)."""
    _, values = feast
    if ours is None or values is None or set(ours) != set(values):
        raise AssertionError(f"{key}: columns differ: ours {ours and sorted(ours)}, feast {values and sorted(values)}")
    for column, value in ours.items():
        theirs = values[column]
        if isinstance(theirs, datetime):
            same = pd.Timestamp(value) == pd.Timestamp(theirs)
        elif isinstance(value, float):
            same = value == theirs or (np.isnan(value) and np.isnan(theirs))
        else:
            same = value == theirs
        if not same:
            raise AssertionError(f"{key}.{column}: ours {value!r} vs feast {theirs!r}")


def workload_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every online-store benchmark shares: how many entities and lookups."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=5_000)
    parser.add_argument("--single", type=int, default=3_000, help="timed 1-entity lookups per store")
    parser.add_argument("--batch", type=int, default=500, help="timed 100-entity lookups per store")
    parser.add_argument("--batch-size", type=int, default=100)
    return parser


def workload(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], list[list[str]]]:
    """The snapshot and the lookups (warm-up first) of one run, the same for every store compared; Feast quieted."""
    logging.getLogger("feast").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="feast")
    frame = snapshot_frame(load_catalog(), args.entities, seed=0)
    names = frame[KEY].tolist()
    rng = np.random.default_rng(42)
    singles = [names[i] for i in rng.integers(0, len(names), WARMUP + args.single)]
    batches = [
        [names[i] for i in rng.choice(len(names), args.batch_size, replace=False)] for _ in range(WARMUP + args.batch)
    ]
    return frame, singles, batches


def main() -> None:
    args = workload_parser(__doc__).parse_args()
    frame, singles, batches = workload(args)

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        write_snapshot(tmp / "online.sqlite", frame, key=KEY, snapshot_id="bench")
        reader = OnlineStoreReader(tmp / "online.sqlite")
        feast = FeastOnline(tmp, frame)
        for key in singles[:20]:
            check_same(reader.lookup_one(key), feast.read([feast.keys[key]])[0], key)
        ours_batch = reader.lookup(batches[0])
        for key, row in zip(batches[0], feast.read([feast.keys[k] for k in batches[0]]), strict=True):
            check_same(ours_batch[key], row, key)

        # Feast gets its EntityKeyProtos built before the timer starts (in its favour).
        feast_singles = [[feast.keys[k]] for k in singles]
        feast_batches = [[feast.keys[k] for k in batch] for batch in batches]
        results = {
            1: (latencies(reader.lookup_one, singles), latencies(feast.read, feast_singles)),
            args.batch_size: (latencies(reader.lookup, batches), latencies(feast.read, feast_batches)),
        }
        reader.close()

    print_results(
        frame,
        load_catalog(),
        results,
        latency_targets,
        describe_ours=(
            "  ours: OnlineStoreReader.lookup_one / .lookup -> dict of Python values per entity (floats, sector str, "
            "event times as ISO-8601 str, not parsed)"
        ),
        describe_feast=(
            "  feast: SqliteOnlineStore.online_read (EntityKeyProtos pre-built, not timed) + "
            "feast_value_type_to_python_type on every value -> (event_ts, dict of Python values; "
            "event times as datetime)"
        ),
    )


def print_results(
    frame: pd.DataFrame,
    catalog: FeatureCatalog,
    results: dict[int, tuple[list[float], list[float]]],
    targets: Callable[[int, float, float], str],
    *,
    describe_ours: str,
    describe_feast: str,
) -> None:
    """The table: per case, both stores' p50/p99, the p99 ratio and the verdict ``targets(size, ours, feast)``."""
    n_values = len(frame.columns) - 1
    print(
        f"online lookup latency: {len(frame):,} entities, {n_values} values per vector "
        f"({n_values - len(catalog.views)} features + {len(catalog.views)} per-view event times), "
        f"{WARMUP} warm-up lookups excluded, same random keys (seed 42) for both stores"
    )
    header = ("case", "lookups", "ours p50", "ours p99", "feast p50", "feast p99", "p99 feast/ours", "target")
    print("  " + "".join(f"{h:<14}" if i == 0 else f"{h:>{WIDTHS[i]}}" for i, h in enumerate(header)))
    for size, (ours, theirs) in results.items():
        ours_p50, ours_p99 = percentiles(ours)
        feast_p50, feast_p99 = percentiles(theirs)
        label = "1 entity" if size == 1 else f"{size} entities"
        cells = (
            label,
            f"{len(ours):,}",
            *(f"{v:.3f} ms" for v in (ours_p50, ours_p99, feast_p50, feast_p99)),
            f"{feast_p99 / ours_p99:.1f}x",
            targets(size, ours_p99, feast_p99),
        )
        print("  " + "".join(f"{c:<14}" if i == 0 else f"{c:>{WIDTHS[i]}}" for i, c in enumerate(cells)))
    print(describe_ours)
    print(describe_feast)


def latency_targets(size: int, ours_p99: float, feast_p99: float) -> str:
    """The SQLite store's targets: absolute p99s."""
    target = {1: 0.2, 100: 2.0}.get(size)
    return "n/a" if target is None else f"ours p99 < {target:g} ms {'PASS' if ours_p99 < target else 'FAIL'}"


if __name__ == "__main__":
    main()
