"""SHAP on 10,000 rows of a 20-feature LightGBM model: LightGBM's native contributions (our fast path) vs
``shap.TreeExplainer``'s own TreeSHAP, the same values (max abs difference checked), seconds each.

    .venv/bin/python -m benchmarks.bench_shap [--rows 10000] [--trees 150]
"""

import argparse
import time

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlops_pipelines.lib.evaluation.explanations import explain, shap_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--trees", type=int, default=150)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(100_000, 20)), columns=[f"f{i:02d}" for i in range(20)])
    y = (x["f00"] + x["f01"] * x["f02"] + rng.normal(size=len(x)) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 31, "verbosity": -1, "num_threads": 2, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(x, y), args.trees)
    sample = x.sample(n=args.rows, random_state=0)
    features = list(x.columns)
    start = time.perf_counter()
    native = explain(booster, sample, features)
    native_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = shap_reference(booster, sample, features)
    shap_s = time.perf_counter() - start
    diff = float(np.abs(native.contributions.to_numpy() - reference).max())
    print(f"SHAP: {args.rows:,} rows x 20 features, {args.trees} trees of <= 31 leaves")
    print(f"  LightGBM native contributions   {native_s:6.2f} s")
    print(f"  shap.TreeExplainer (TreeSHAP)   {shap_s:6.2f} s")
    print(
        f"  native speed-up {shap_s / native_s:.1f}x; max |difference| {diff:.2e} (target < 1e-6) -> "
        f"{'PASS' if diff < 1e-6 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
