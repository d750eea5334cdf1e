"""Loading one day from a folder of files: the previous strategy (parse every file of the folder, keep the day's
rows) vs the folder index (parse only the files with bars on that day, each once). The folder: 30 daily files
plus one big history file (1M rows, the years before them), as after a vendor backfill. Target: >= 10x.

    .venv/bin/python -m benchmarks.bench_ingestion [--symbols 50] [--days 30] [--big-rows 1000000] [--repeat 3]

Both strategies use the same file reader, and their rows for the day are checked equal before timing is
reported. The index is warm, as the sensor leaves it after it has seen the files; the first (cold) load, which
parses every file once to learn its days, is printed too.
"""

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import best_of
from mlops_pipelines.lib.ingestion.raw_folder import load_window, open_index
from mlops_pipelines.lib.ingestion.source_files import list_source_files, read_source_file
from mlops_pipelines.lib.ingestion.validation import parse_utc

FIRST_BAR = datetime(2020, 1, 1, tzinfo=UTC)
TARGET = 10.0


def bars(symbols: int, start: pd.Timestamp, hours: int, rng: np.random.Generator) -> pd.DataFrame:
    times = pd.date_range(start, periods=hours, freq="h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, (hours, symbols)), axis=0)).ravel()
    return pd.DataFrame(
        {
            "symbol": np.tile([f"SYM{i:04d}" for i in range(symbols)], hours),
            "timestamp": np.repeat(times, symbols),
            "open": close.round(4),
            "high": (close * 1.002).round(4),
            "low": (close * 0.998).round(4),
            "close": close.round(4),
            "volume": rng.integers(100, 10_000, hours * symbols),
            "sector": "technology",
        }
    )


def write_folder(raw: Path, symbols: int, days: int, big_rows: int) -> datetime:
    """Writes the folder; returns the first of the daily files' days."""
    rng = np.random.default_rng(0)
    first_daily = pd.Timestamp(FIRST_BAR) + pd.Timedelta(hours=-(-big_rows // symbols)) + pd.Timedelta(days=2)
    first_daily = first_daily.floor("D")
    bars(symbols, pd.Timestamp(FIRST_BAR), -(-big_rows // symbols), rng).head(big_rows).to_csv(
        raw / "history.csv", index=False
    )
    for day in range(days):
        start = first_daily + pd.Timedelta(days=day)
        bars(symbols, start, 24, rng).to_csv(raw / f"bars_{start:%Y-%m-%d}.csv", index=False)
    return first_daily.to_pydatetime()


def previous_strategy(files: list[Path], start: datetime, end: datetime) -> pd.DataFrame:
    """What a one-day run did before the index: every file parsed, the day's rows (and unparseable ones) kept."""
    frame = pd.concat([read_source_file(path) for path in files], ignore_index=True)
    ts = parse_utc(frame["timestamp"])
    return frame[((ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))) | ts.isna()].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        first_daily = write_folder(raw, args.symbols, args.days, args.big_rows)
        files = list_source_files(raw)
        day = first_daily + timedelta(days=args.days - 1)  # the latest day, as the daily run after its file lands
        end = day + timedelta(days=1)
        latest = end + timedelta(minutes=5)

        def ours() -> pd.DataFrame:
            with open_index(Path(tmp) / "index.sqlite") as index:
                return load_window(
                    index, files, day, end, first_bar=FIRST_BAR, latest=latest, bar_interval=timedelta(hours=1)
                ).bars

        cold_s = best_of(ours, repeat=1)  # the first use of the index scans every file once
        expected = previous_strategy(files, day, end)
        got = ours().drop(columns="source_mtime_ns")
        pd.testing.assert_frame_equal(
            got.sort_values(["symbol", "timestamp"]).reset_index(drop=True),
            expected.sort_values(["symbol", "timestamp"]).reset_index(drop=True),
        )
        assert len(got) == 24 * args.symbols, len(got)
        previous_s = best_of(lambda: previous_strategy(files, day, end), repeat=args.repeat)
        ours_s = best_of(ours, repeat=args.repeat)
        size_mb = sum(p.stat().st_size for p in files) / 1e6
    ratio = previous_s / ours_s
    print(
        f"one day from a folder of {len(files)} files ({size_mb:.1f} MB: {args.days} daily files of "
        f"{24 * args.symbols:,} rows + one of {args.big_rows:,} rows)"
    )
    print(f"  previous: parse every file          {previous_s:7.3f} s")
    print(f"  ours: the files holding the day     {ours_s:7.3f} s  (first use, index cold: {cold_s:.3f} s)")
    print(f"  previous / ours = {ratio:.1f}x (target >= {TARGET:g}x) -> {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
