"""Capacity plan: the single warehouse writer's work measured at a few sizes on this machine, per-row costs
fitted, and the figures of docs/capacity_plan.md for 500, 5,000 and 50,000 symbols of hourly bars.

Measured (each the median of ``--repeat`` runs):

1. the hourly ``drift_job`` (bench_drift's workload: both models, feature drift, prediction drift, realized
   performance, Evidently HTML and PNGs, through Dagster) with one day of S symbols' hourly feature rows
   (24 S) against a 5-day reference (120 S); the steady hour (reference window cached, 23 of 24 runs a day)
   and the first hour of a new reference window (once a day). bench_drift's 1M vs 5M is S = 41,667
   (``--drift-symbols 41667``);
2. feature materialization (``materialize_view`` of every catalog view, bench_features' work): every view is
   rebuilt over the whole history at each run, so its cost grows with the history, not with the new day;
3. point-in-time retrieval (bench_point_in_time's workload: 3 views, full semantics) of a training set;
4. the DuckDB file's bytes per bar (raw bars + every view with its point-in-time index, after a checkpoint).

Each cost is fitted as ``fixed + per_row * rows`` (least squares over the sizes) and projected. The machine
these run on may be shared: the table says so, and the medians are what is printed.

    python -m benchmarks.capacity            # about 30 minutes on 2 busy cores
    python -m benchmarks.capacity --quick    # tiny sizes, about 3 minutes: the pipeline, not the figures
"""

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks import bench_drift, bench_point_in_time
from benchmarks.bench_features import materialize_all
from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.point_in_time import retrieval_sql
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.synthetic_market import SyntheticMarketConfig, generate_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars

TARGET_SYMBOLS = (500, 5_000, 50_000)
HOURS_PER_DAY, DAYS_PER_YEAR = 24, 365
HOUR_S = 3600.0
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Sizes:
    drift_symbols: tuple[int, ...]  # the drift job's market sizes (current rows = 24 x symbols)
    feature_symbols: tuple[int, ...]  # feature materialization: symbols x ``feature_days`` of bars
    feature_days: int
    pit_entities: tuple[int, ...]  # point-in-time retrieval: entity rows (history = 5 x entities)


FULL = Sizes(
    drift_symbols=(500, 5_000, 20_000), feature_symbols=(500, 1_000, 2_000), feature_days=30,
    pit_entities=(100_000, 300_000, 600_000),
)  # fmt: skip
QUICK = Sizes(drift_symbols=(30, 90), feature_symbols=(20, 60), feature_days=10, pit_entities=(5_000, 15_000))


@dataclass(frozen=True)
class Fit:
    """seconds = fixed_s + per_row_s * rows, least squares over the measured sizes."""

    fixed_s: float
    per_row_s: float

    @classmethod
    def of(cls, rows: list[float], seconds: list[float]) -> "Fit":
        slope, intercept = np.polyfit(np.asarray(rows, float), np.asarray(seconds, float), 1)
        return cls(max(0.0, float(intercept)), max(0.0, float(slope)))

    def __call__(self, rows: float) -> float:
        return self.fixed_s + self.per_row_s * rows

    def describe(self, unit: str) -> str:
        return f"{self.fixed_s:.2f} s + {self.per_row_s * 1e6:.3f} s per million {unit}"


def median_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- 1. the hourly drift job -----------------------------------------------------------------------------------
def drift_job(symbols: int, repeat: int) -> tuple[float, float]:
    """(steady hour, first hour of a new reference window): medians over ``repeat`` rounds of bench_drift's runs."""
    steady, new_window = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            runs = bench_drift.hourly_job(symbols * HOURS_PER_DAY, Path(tmp))
            steady.append(runs[1][1])
            new_window.append(runs[2][1])
    return statistics.median(steady), statistics.median(new_window)


# ---- 2. feature materialization, 4. bytes per bar ----------------------------------------------------------------
def features(symbols: int, days: int, repeat: int) -> tuple[int, float, float, float, float]:
    """(bars, median seconds to materialize every view, DuckDB file bytes per bar of the raw bars alone, and with
    every view, the median share of the longest view's step in a rebuild: the longest the pool is held at once).
    Sizes are of a fresh file after a checkpoint (a rebuilt table's old blocks are reused, not returned to the
    file system, so a file rebuilt in place is no measure of the data)."""
    catalog = load_catalog()
    config = SyntheticMarketConfig(n_symbols=symbols, bad_row_rate=0.0, regime_shift_at=None)
    bars = validate_bars(generate_bars(config, START, START + timedelta(days=days))).accepted
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capacity.duckdb"
        with warehouse.connect(path) as conn:
            market_bars.replace_all(conn, bars)
            conn.execute("CHECKPOINT")
            raw_bytes = file_bytes(path)
            materialize_all(conn, catalog)
            conn.execute("CHECKPOINT")
            all_bytes = file_bytes(path)
            shares: list[float] = []

            def rebuild() -> None:
                per_view = materialize_all(conn, catalog)
                shares.append(max(s for s, _ in per_view.values()) / sum(s for s, _ in per_view.values()))

            seconds = median_of(repeat, rebuild)
    return len(bars), seconds, raw_bytes / len(bars), all_bytes / len(bars), statistics.median(shares)


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# ---- 3. point-in-time retrieval ---------------------------------------------------------------------------------
def point_in_time(entities: int, repeat: int) -> float:
    views = [bench_point_in_time.make_view(i) for i in range(3)]
    with tempfile.TemporaryDirectory() as tmp, warehouse.connect(Path(tmp) / "pit.duckdb") as conn:
        bench_point_in_time.build(conn, entities, 5 * entities, views)
        sql = retrieval_sql(views, "entities", ["symbol", "event_timestamp"])
        return median_of(repeat, lambda: conn.execute(f"CREATE OR REPLACE TEMP TABLE out_pit AS {sql}"))


# ---- the plan ---------------------------------------------------------------------------------------------------
def busy_note() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"


def plan(drift_steady: Fit, drift_window: Fit, rebuild: Fit, pit: Fit, bytes_per_bar: float, share: float) -> None:
    """The table for TARGET_SYMBOLS and the two limits of one writer. ``share``: the longest view's part of a
    feature rebuild (one step holds the warehouse slot that long; the hourly job waits behind it)."""
    n_views = len(load_catalog().views)
    print("\nprojection (hourly bars, 24 a day; features rebuilt once a day over one year of history):")
    print(
        f"{'symbols':>8} {'bars/day':>10} {'view rows/day':>14} {'storage/year':>13} {'hourly job':>11} "
        f"{'new-window h':>13} {'daily rebuild':>14} {'longest step':>13} {'writer busy/h':>14} {'1y training set':>16}"
    )
    for symbols in TARGET_SYMBOLS:
        per_day = symbols * HOURS_PER_DAY
        year = per_day * DAYS_PER_YEAR
        hourly, window_hour, daily = drift_steady(per_day), drift_window(per_day), rebuild(year)
        print(
            f"{symbols:>8,} {per_day:>10,} {per_day * n_views:>14,} {year * bytes_per_bar / 1e9:>10.1f} GB "
            f"{hourly:>9.0f} s {window_hour:>11.0f} s {daily:>12.0f} s {share * daily:>11.0f} s "
            f"{busy_per_hour(drift_steady, drift_window, rebuild, symbols):>12.0f} s {pit(year):>14.0f} s"
        )
    late = bisect(lambda s: drift_window(s * HOURS_PER_DAY) + share * rebuild(s * HOURS_PER_DAY * DAYS_PER_YEAR))
    print(f"  the hourly job misses its hour behind the longest rebuild step from about {late:,.0f} symbols")
    for fraction in (0.5, 1.0):
        symbols = bisect(lambda s, f=fraction: busy_per_hour(drift_steady, drift_window, rebuild, s) / f)
        print(f"  one writer busy {fraction:.0%} of every hour on average from about {symbols:,.0f} symbols")


def busy_per_hour(drift_steady: Fit, drift_window: Fit, rebuild: Fit, symbols: float) -> float:
    """The writer's mean seconds of work per hour: 23 steady hourly jobs, one new-window hour, one rebuild a day."""
    per_day = symbols * HOURS_PER_DAY
    return (23 * drift_steady(per_day) + drift_window(per_day) + rebuild(per_day * DAYS_PER_YEAR)) / 24


def bisect(seconds_at) -> float:
    """The market size (symbols) at which ``seconds_at(symbols)`` reaches the hour (increasing in symbols)."""
    low, high = 1.0, 1e8
    if seconds_at(low) >= HOUR_S:
        return 0.0
    for _ in range(100):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if seconds_at(mid) < HOUR_S else (low, mid)
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: checks the pipeline, figures meaningless.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per measurement; the median is reported.")
    parser.add_argument("--drift-symbols", type=int, nargs="+", help="Only the drift job, at these market sizes.")
    args = parser.parse_args()
    sizes, repeat = (QUICK, 1) if args.quick else (FULL, args.repeat)
    if args.drift_symbols:
        print(f"capacity benchmark on {busy_note()} at start; medians of {repeat} run(s)")
        for symbols in args.drift_symbols:
            a, b = drift_job(symbols, repeat)
            print(f"  {symbols:>7,} symbols: steady hour {a:6.1f} s  new reference window {b:6.1f} s")
        print(f"machine at the end: {busy_note()}")
        return
    print(f"capacity benchmark on {busy_note()} at start; medians of {repeat} run(s)")

    print(f"\n1. feature materialization, every view rebuilt over {sizes.feature_days} days of hourly bars:")
    counts, seconds, per_bar, share = [], [], [], 0.0
    for symbols in sizes.feature_symbols:
        n, s, raw, b, share = features(symbols, sizes.feature_days, repeat)
        counts.append(float(n))
        seconds.append(s)
        per_bar.append(b)
        print(
            f"  {symbols:>7,} symbols: {n:>11,} bars  {s:7.1f} s  DuckDB file {b:6.1f} bytes per bar "
            f"(raw bars alone {raw:5.1f}); longest view {share:.0%} of the rebuild"
        )
    rebuild = Fit.of(counts, seconds)
    print(f"  fit: {rebuild.describe('bars of history')}")

    print("\n2. point-in-time retrieval, 3 views, history 5x the entity rows:")
    entities, pit_s = [], []
    for n in sizes.pit_entities:
        s = point_in_time(n, repeat)
        entities.append(float(n))
        pit_s.append(s)
        print(f"  {n:>9,} entity rows vs {5 * n:>10,} history rows: {s:6.2f} s")
    pit = Fit.of(entities, pit_s)
    print(f"  fit: {pit.describe('entity rows')}")

    print("\n3. hourly drift job (both models), current day vs 5-day reference:")
    steady, window = [], []
    for symbols in sizes.drift_symbols:
        a, b = drift_job(symbols, repeat if not args.quick else 1)
        steady.append(a)
        window.append(b)
        print(
            f"  {symbols:>7,} symbols: {symbols * 24:>9,} vs {symbols * 120:>10,} rows  steady hour {a:6.1f} s  "
            f"new reference window {b:6.1f} s"
        )
    rows = [24.0 * s for s in sizes.drift_symbols]
    drift_steady, drift_window = Fit.of(rows, steady), Fit.of(rows, window)
    print(f"  fit: steady {drift_steady.describe('current rows')}; new window {drift_window.describe('current rows')}")

    plan(drift_steady, drift_window, rebuild, pit, per_bar[-1], share)
    print(f"\nmachine at the end: {busy_note()}")


if __name__ == "__main__":
    main()
