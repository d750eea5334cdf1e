"""Feature materialization: the catalog's four views over 500 symbols x 1 year of hourly bars (~4.4M bars),
ours (``materialize_view`` per view in dependency order: DuckDB tables written in one transaction each, with
the availability lag and the point-in-time index column) against the same features computed with pandas
groupby/rolling (``reference_impls.pandas_features``: in memory only, writes nothing). The two outputs are
checked equal before any figure is printed. Target: pandas / ours >= 5x.

    .venv/bin/python -m benchmarks.bench_features [--symbols 500] [--days 365]
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.defs.ingestion.assets import BARS_DDL, BARS_TABLE
from mlops_pipelines.lib import warehouse
from mlops_pipelines.lib.feature_store import materialize_view
from mlops_pipelines.lib.feature_views import FeatureCatalog
from mlops_pipelines.lib.market_data import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.validation import validate_bars
from mlops_pipelines_tests.reference_impls import pandas_features

TARGET = 5.0
START = datetime(2026, 1, 1, tzinfo=UTC)
T = TypeVar("T")


class MismatchError(AssertionError):
    """Ours and the pandas baseline disagree: the timing comparison would not be apples to apples."""


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of ``repeat`` runs and that run's result."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - start, result))
    return min(runs, key=lambda run: run[0])


def materialize_all(conn: duckdb.DuckDBPyConnection, catalog: FeatureCatalog) -> dict[str, tuple[float, int]]:
    """Every view in dependency order; (seconds, rows) per view."""
    per_view: dict[str, tuple[float, int]] = {}
    for name in catalog.topological_order():
        start = time.perf_counter()
        rows = materialize_view(conn, catalog, name).row_count
        per_view[name] = (time.perf_counter() - start, rows)
    return per_view


def check_equal(conn: duckdb.DuckDBPyConnection, catalog: FeatureCatalog, expected: dict[str, pd.DataFrame]) -> int:
    """Every feature column and the created time of every view, ours vs pandas; returns the values compared."""
    compared = 0
    for name in catalog.topological_order():
        view = catalog.views[name]
        columns = [view.created_time, *view.features]
        select = ", ".join(f'"{c}"' for c in ("symbol", "event_ts", *columns))
        ours = conn.execute(
            f"SELECT {select} FROM {warehouse.quote_table(view.table)} ORDER BY symbol, event_ts"
        ).fetchdf()
        theirs = expected[name].sort_values(["symbol", "event_ts"]).reset_index(drop=True)
        if len(ours) != len(theirs):
            raise MismatchError(f"{name}: {len(ours)} rows ours vs {len(theirs)} pandas")
        for column in ("symbol", "event_ts", view.created_time):
            a, b = ours[column], theirs[column]
            if column != "symbol":  # compare as UTC instants, vectorized (to_numpy would box every value)
                a, b = pd.to_datetime(a, utc=True), pd.to_datetime(b, utc=True)
            if not a.eq(b).all():
                raise MismatchError(f"{name}.{column}: ours and pandas differ on {int((~a.eq(b)).sum()):,} rows")
        for feature in view.features:
            a, b = ours[feature], theirs[feature]
            if view.schema_[feature] == "DOUBLE":
                bad = ~np.isclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-7, atol=1e-9, equal_nan=True)
            else:
                bad = a.astype(object).to_numpy() != b.astype(object).to_numpy()
            if bad.any():
                raise MismatchError(
                    f"{name}.{feature}: ours and pandas differ on {int(np.sum(bad)):,} of {len(a):,} rows, e.g.\n"
                    f"{pd.DataFrame({'ours': a[bad], 'pandas': b[bad]}).head(5)}"
                )
            compared += len(a)
    return compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat-ours", type=int, default=2)
    parser.add_argument("--repeat-pandas", type=int, default=2)
    args = parser.parse_args()

    config = SyntheticMarketConfig(n_symbols=args.symbols, bad_row_rate=0.0, regime_shift_at=None)
    start = time.perf_counter()
    bars = validate_bars(generate_bars(config, START, START + timedelta(days=args.days))).accepted
    setup_s = time.perf_counter() - start
    catalog = load_catalog()
    lags = {name: view.availability_lag for name, view in catalog.views.items()}

    with tempfile.TemporaryDirectory() as tmp, warehouse.connect(Path(tmp) / "bench.duckdb") as conn:
        warehouse.replace_rows(conn, BARS_TABLE, bars, where="true", create_sql=BARS_DDL)
        threads = conn.execute("SELECT current_setting('threads')").fetchone()
        ours_s, per_view = timed(lambda: materialize_all(conn, catalog), args.repeat_ours)
        pandas_s, expected = timed(lambda: pandas_features(bars, lags), args.repeat_pandas)
        compared = check_equal(conn, catalog, expected)

    ratio = pandas_s / ours_s
    rows = sum(n for _, n in per_view.values())
    print(
        f"feature materialization: {args.symbols} symbols x {args.days} days, {len(bars):,} bars, "
        f"{len(catalog.views)} views, {rows:,} feature rows (bars generated + validated in {setup_s:.1f} s, not timed)"
    )
    print(f"  checked equal: {compared:,} feature values + created times, ours vs pandas (allclose, NaN == NaN)")
    print(
        f"  pandas groupby/rolling        {pandas_s:7.2f} s  (best of {args.repeat_pandas}; bars already in memory, "
        "results kept in memory, nothing written; single-threaded)"
    )
    print(
        f"  ours (materialize_view x {len(catalog.views)})   {ours_s:7.2f} s  (best of {args.repeat_ours}; reads "
        f"raw.market_bars, writes {len(catalog.views)} DuckDB tables transactionally incl. lag + point-in-time "
        f"index; DuckDB threads={threads[0] if threads else '?'})"
    )
    print("    per view: " + ", ".join(f"{name} {seconds:.2f} s" for name, (seconds, _) in per_view.items()))
    print(f"  pandas / ours = {ratio:.2f}x (target >= {TARGET:g}x) -> {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
