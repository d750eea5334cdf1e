"""Drift scan: 50 numeric + 3 categorical features, our statistics (``lib/drift.py``) vs Evidently's
``DataDriftPreset`` on the same data in the same run, at a size Evidently finishes (``--compare-current`` rows
vs 5x as many reference rows); then ours alone at the full size (1M current vs 5M reference).
Targets: at least 40x faster than Evidently; the full-size scan well under the hourly job's 30 s.

    .venv/bin/python -m benchmarks.bench_drift [--current 1000000] [--compare-current 100000]
"""

import argparse
import time

import numpy as np
import pandas as pd

from mlops_pipelines.lib.drift import categorical_drift, numeric_drift
from mlops_pipelines.lib.evidently_report import (
    DataDriftPreset,
    Report,  # the pinned Evidently, through our adapter module
)

N_NUMERIC, N_CATEGORICAL = 50, 3


def make(rows: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"num_{i:02d}": rng.normal(shift * (i % 5 == 0), 1.0, rows).astype("float64") for i in range(N_NUMERIC)}
    for j in range(N_CATEGORICAL):
        data[f"cat_{j}"] = pd.Categorical(rng.choice(["a", "b", "c", "d", "e"], rows)).astype(str)
    return pd.DataFrame(data)


def ours(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    numeric = [c for c in reference if c.startswith("num_")]
    categorical = [c for c in reference if c.startswith("cat_")]
    return pd.concat(
        [numeric_drift(reference, current, numeric), categorical_drift(reference, current, categorical)],
        ignore_index=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--current", type=int, default=1_000_000)
    parser.add_argument("--compare-current", type=int, default=100_000)
    args = parser.parse_args()

    small_cur, small_ref = make(args.compare_current, 0.6, 1), make(5 * args.compare_current, 0.0, 2)
    start = time.perf_counter()
    ours_small = ours(small_ref, small_cur)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    Report([DataDriftPreset()]).run(current_data=small_cur, reference_data=small_ref)
    evidently_s = time.perf_counter() - start
    flagged = ours_small[ours_small["psi"] > 0.1]["feature"].tolist()
    assert set(flagged) == {f"num_{i:02d}" for i in range(0, N_NUMERIC, 5)}, flagged  # the shifted columns

    print(f"drift scan, {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features")
    print(f"  {args.compare_current:,} current vs {5 * args.compare_current:,} reference rows:")
    print(f"    Evidently DataDriftPreset   {evidently_s:7.2f} s")
    print(f"    ours (lib/drift.py)         {ours_s:7.2f} s")
    ratio = evidently_s / ours_s
    print(f"    Evidently / ours = {ratio:.1f}x (target >= 40x) -> {'PASS' if ratio >= 40 else 'FAIL'}")

    full_cur, full_ref = make(args.current, 0.6, 3), make(5 * args.current, 0.0, 4)
    start = time.perf_counter()
    ours(full_ref, full_cur)
    full_s = time.perf_counter() - start
    print(
        f"  {args.current:,} current vs {5 * args.current:,} reference rows: ours {full_s:.2f} s "
        f"(one model's scan; the hourly job target for all models is < 30 s)"
    )


if __name__ == "__main__":
    main()
