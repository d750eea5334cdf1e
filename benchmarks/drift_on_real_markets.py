"""Drift monitoring on real markets: the S&P 500 and the NASDAQ Composite, daily bars 1999-2018 (shipped by the
``arch`` package, ``arch.data.sp500`` / ``arch.data.nasdaq``), through the platform's own path: the bars
validated at ``MLOPS_BAR_INTERVAL=1d`` on the ``equities`` calendar (``BarClock``), the catalog's feature views
materialized in a DuckDB warehouse, and each window judged by ``drift_report.build_report`` with the catalog's
drift policy (calibrated thresholds, importance-weighted verdict; equal weights over the volatility
forecaster's features: returns, volatility and oscillators of one index).

Windows follow the data: one index makes one row a session, and a slow feature (a 24-bar volatility, a 14-bar
RSI) is worth one independent value every couple of sessions; the report of a 45-day window (~31 sessions)
says its slow features need ~50-100 rows (INSUFFICIENT). So the current window is 84 calendar days (~58
sessions), and the reference must hold ``calibration.min_windows`` (5) of them: the 450 days before.

Three figures per series:

- false alarms: windows ending every ``--step`` days through the calm periods 2004-2006, 2012-2014 and
  2016-2017, each against the rolling 450 days before it, inside the period (so the judged windows end from
  mid-2005, mid-2013 and mid-2017): the share SEVERE (a retraining) and MODERATE-or-worse;
- the placebo: windows drawn at random from inside each calm reference, judged against that reference;
- detection delay: from a crisis start (2008-09-15 Lehman Brothers; 2018-02-05 the volatility spike), windows
  ending each day, against the 450 days before the crisis (what a model trained before it learned): days
  until the first SEVERE. (The data ends in 2018: the 2020 COVID crash is not in it.)

    .venv/bin/python -m benchmarks.drift_on_real_markets [--step 7] [--placebo 40]
"""

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.catalog.models import VOLATILITY_FORECASTER
from mlops_pipelines.catalog.policies import load_drift_policy_file
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.bars import BarClock
from mlops_pipelines.lib.features import feature_store
from mlops_pipelines.lib.ingestion import market_bars
from mlops_pipelines.lib.ingestion.validation import validate_bars
from mlops_pipelines.lib.monitoring.drift_policy import DriftPolicy
from mlops_pipelines.lib.monitoring.drift_report import build_report
from mlops_pipelines.lib.monitoring.severity import Severity

DAILY = BarClock(timedelta(days=1), "equities")
SPEC = VOLATILITY_FORECASTER  # returns, volatility, oscillators: every view that one symbol makes sense of
CURRENT = timedelta(days=84)  # ~58 sessions: what the slow features of one index need
REFERENCE = timedelta(days=450)  # 5 windows (calibration.min_windows)
D = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
# (first day judged, last day judged): each window's reference is the year before it, inside the calm period
CALM = {"2004-2006": (D(2005, 7, 1), D(2006, 12, 31)), "2012-2014": (D(2013, 7, 1), D(2014, 12, 31)),
        "2016-2017": (D(2017, 7, 1), D(2017, 12, 31))}  # fmt: skip
PLACEBO_REFERENCES = {"2004-2006": D(2006, 12, 1), "2012-2014": D(2014, 12, 1), "2016-2017": D(2017, 12, 1)}
CRISES = {"Lehman 2008-09-15": D(2008, 9, 15), "volatility spike 2018-02-05": D(2018, 2, 5)}
MAX_DELAY = timedelta(days=60)


def load_bars(series: str) -> pd.DataFrame:
    """The ``arch`` package's daily bars of ``series`` (``sp500`` or ``nasdaq``) in the raw bars' form: one
    symbol, each session's bar opening at its date (UTC midnight, the 1d grid), validated at 1d."""
    from arch.data import nasdaq, sp500  # a dev dependency: the real data a package ships

    data = {"sp500": sp500, "nasdaq": nasdaq}[series].load()
    frame = pd.DataFrame(
        {
            "symbol": series.upper(),
            "timestamp": pd.to_datetime(data.index).tz_localize("UTC"),
            "open": data["Open"].to_numpy(float),
            "high": data["High"].to_numpy(float),
            "low": data["Low"].to_numpy(float),
            "close": data["Adj Close"].to_numpy(float),
            "volume": data["Volume"].to_numpy(float),
            "sector": "index",
        }
    )
    frame["available_at"] = frame["timestamp"] + DAILY.interval  # known at the session's close (the next grid point)
    frame["source_file"] = f"arch.data.{series}"
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)  # adjusted closes can sit outside the raw range
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    result = validate_bars(frame, now=D(2019, 1, 2), bar_interval=DAILY.interval)
    if len(result.quarantined):
        raise ValueError(f"{series}: {len(result.quarantined)} bars quarantined, e.g. {result.quarantined.iloc[0]}")
    return result.accepted


def market_warehouse(series: str, first: datetime, last: datetime, directory: Path) -> Path:
    """A warehouse holding ``series``' bars in [first, last) and the catalog's views over them at 1d."""
    catalog = load_catalog(DAILY)
    bars = load_bars(series)
    bars = bars[(bars["timestamp"] >= first) & (bars["timestamp"] < last)]
    path = directory / f"{series}.duckdb"
    with warehouse.connect(path) as conn:
        market_bars.replace_all(conn, bars)
        for name in catalog.topological_order():
            feature_store.materialize_view(conn, catalog, name)
    return path


def judge(conn: duckdb.DuckDBPyConnection, policy: DriftPolicy, end: datetime, reference_end: datetime) -> Severity:
    """The model severity of the ``CURRENT`` days before ``end`` against the ``REFERENCE`` before
    ``reference_end``."""
    report = build_report(
        conn, SPEC, "1", load_catalog(DAILY), policy, SPEC.features(load_catalog(DAILY)),
        window_end=end, current=CURRENT, reference=REFERENCE, reference_end=reference_end,
    )  # fmt: skip
    return report.severity


@dataclass
class Rates:
    counts: dict[str, int]

    @property
    def judged(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "INSUFFICIENT")

    def share(self, *levels: str) -> float:
        return sum(self.counts.get(level, 0) for level in levels) / self.judged if self.judged else float("nan")

    def __str__(self) -> str:
        return (
            f"SEVERE {self.share('SEVERE'):.1%}, MODERATE+ {self.share('SEVERE', 'MODERATE'):.1%} of {self.judged} "
            f"judged windows ({self.counts.get('INSUFFICIENT', 0)} INSUFFICIENT)"
        )


def tally(severities: list[Severity]) -> Rates:
    counts = {str(s): 0 for s in Severity}
    for s in severities:
        counts[str(s)] += 1
    return Rates(counts)


def calm_windows(conn: duckdb.DuckDBPyConnection, policy: DriftPolicy, first: datetime, last: datetime, step: int):
    """Windows ending every ``step`` days in [first, last], each against the reference before its start."""
    ends = [first + timedelta(days=d) for d in range(0, (last - first).days + 1, step)]
    return tally([judge(conn, policy, end, end - CURRENT) for end in ends])


def placebo(conn: duckdb.DuckDBPyConnection, policy: DriftPolicy, reference_end: datetime, n: int, seed: int):
    """``n`` windows at random inside the reference (seeded), each against that whole reference."""
    offsets = np.random.default_rng(seed).integers(0, (REFERENCE - CURRENT).days, n)
    return tally([judge(conn, policy, reference_end - timedelta(days=int(d)), reference_end) for d in offsets])


def detection_delay(conn: duckdb.DuckDBPyConnection, policy: DriftPolicy, start: datetime) -> tuple[int | None, str]:
    """Days from ``start`` until the first window ending on or after it that is SEVERE (reference: before the
    window ending at ``start``), and the verdict of that window (an alarm already raised before the crisis)."""
    before = judge(conn, policy, start, start - CURRENT)
    for day in range(MAX_DELAY.days + 1):
        if judge(conn, policy, start + timedelta(days=day + 1), start - CURRENT) == Severity.SEVERE:
            return day, str(before)
    return None, str(before)


def run(series: str, step: int, n_placebo: int, directory: Path) -> None:
    policy = load_drift_policy_file()
    started = time.perf_counter()
    path = market_warehouse(series, D(1999, 1, 1), D(2019, 1, 1), directory)
    with warehouse.connect(path, read_only=True) as conn:
        for name, (first, last) in CALM.items():
            print(f"{series} calm {name}: {calm_windows(conn, policy, first, last, step)}")
        for name, end in PLACEBO_REFERENCES.items():
            print(f"{series} placebo in {name}: {placebo(conn, policy, end, n_placebo, seed=end.year)}")
        for name, start in CRISES.items():
            delay, before = detection_delay(conn, policy, start)
            shown = f"{delay} days" if delay is not None else f"not SEVERE within {MAX_DELAY.days} days"
            print(f"{series} {name}: first SEVERE after {shown} (the window ending that morning: {before})")
    print(f"{series}: {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=7, help="days between calm windows (default 7)")
    parser.add_argument("--placebo", type=int, default=40, help="placebo windows per reference (default 40)")
    parser.add_argument("--series", nargs="+", default=["sp500", "nasdaq"], choices=["sp500", "nasdaq"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for series in args.series:
            run(series, args.step, args.placebo, Path(directory))


if __name__ == "__main__":
    main()
