"""Every benchmark still runs, at a tiny size, from a clean working directory.

A benchmark checks its result against its baseline before it prints a figure (equal features, equal portfolio
returns, SHAP values within 1e-6, ...), so a run that completes also says the fast path and the baseline
still agree. Ratios at these sizes mean nothing and are not asserted; only that a verdict was printed.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_pipelines_tests.conftest import CEILING_S, require

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "bench_backtest": ["--symbols", "5", "--days", "20"],
    "bench_cli_startup": ["--repeat", "1"],
    "bench_features": ["--symbols", "5", "--days", "20", "--repeat-ours", "1", "--repeat-pandas", "1"],
    "bench_point_in_time": ["--entities", "5000", "--history", "30000"],
    "bench_shap": ["--rows", "300", "--trees", "5"],
    "bench_training": ["--rows", "60000", "--features", "5", "--repeat", "1"],
    "bench_drift": ["--current", "3000", "--compare-current", "2000"],
    "bench_online_store": ["--entities", "200", "--single", "50", "--batch", "10", "--batch-size", "10"],
    "bench_online_store_redis": ["--entities", "200", "--single", "50", "--batch", "10", "--batch-size", "10"],
    "bench_ingestion": ["--symbols", "2", "--days", "3", "--big-rows", "2000", "--repeat", "1"],
    "bench_serving": ["--seconds", "0.3", "--trees", "5", "--symbols", "100"],
    "prompt_scorers": [],
    "drift_on_synthetic_market": ["--symbols", "4", "--windows", "5"],
    "synthetic_edge": ["--symbols", "4", "--seeds", "7", "--train-days", "10", "--test-days", "4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs_at_a_tiny_size(name: str, tmp_path: Path) -> None:
    if name.startswith("bench_online_store"):
        pytest.importorskip("feast", reason="the Feast baseline needs the bench extra: pip install -e '.[bench]'")
    if name == "bench_online_store_redis":
        require(shutil.which("redis-server"), "redis-server", "apt-get install redis-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *TINY[name]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=CEILING_S,  # a safety net only: a hung benchmark must end
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "PASS" in done.stdout or "FAIL" in done.stdout, done.stdout[-2000:]
    assert not any(tmp_path.iterdir()), f"{name} left files in its working directory: {list(tmp_path.iterdir())}"
