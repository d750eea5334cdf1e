"""`mlops` startup: CPU seconds of `mlops --help` and `mlops features list`, each in a fresh interpreter, vs
the libraries every command imported when the CLI imported eagerly (Dagster, MLflow, LightGBM, pandas, DuckDB)
and the floor (an interpreter importing typer and rich only). CPU time (user + system of the child), not wall
time: it hardly depends on what else the machine runs.

    .venv/bin/python -m benchmarks.bench_cli_startup [--repeat 5]
"""

import argparse
import resource
import subprocess
import sys

from benchmarks._common import report

TARGET_S = 1.0
CASES = {
    "mlops --help": ["-c", "from mlops_pipelines.cli import main; main()", "--help"],
    "mlops features list": ["-c", "from mlops_pipelines.cli import main; main()", "features", "list"],
    "eager imports (baseline)": ["-c", "import dagster, mlflow, lightgbm, pandas, duckdb, typer, rich"],
    "floor: typer + rich": ["-c", "import typer, rich.table"],
}


def cpu_seconds(args: list[str]) -> float:
    """User + system CPU of one child interpreter running ``args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the least CPU is reported")
    args = parser.parse_args()
    best = {name: min(cpu_seconds(case) for _ in range(args.repeat)) for name, case in CASES.items()}
    for name, seconds in best.items():
        print(f"  {name:<28} {seconds:5.2f} s CPU (least of {args.repeat})")
    for name in ("mlops --help", "mlops features list"):
        report(name, best[name], "eager imports", best["eager imports (baseline)"], f"< {TARGET_S:.0f} s CPU")
    passed = all(best[name] < TARGET_S for name in ("mlops --help", "mlops features list"))
    print(f"startup under {TARGET_S:.0f} s of CPU -> {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
