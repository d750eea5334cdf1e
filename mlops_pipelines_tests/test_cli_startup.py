"""The `mlops` command starts at once: its modules import no heavy library until a command needs one.

Measured by what a fresh interpreter has imported, not by timing: `--help` and the catalog commands must not
pay for Dagster, MLflow, LightGBM, pandas or DuckDB (several seconds of CPU together). Each case runs the real
entry point (`mlops_pipelines.cli:main`) in a subprocess with stdout piped, as a script or CI would.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("dagster", "mlflow", "lightgbm", "pandas", "duckdb", "sklearn", "matplotlib")
RUN = """
import json, sys
from mlops_pipelines.cli import main
sys.argv = ["mlops", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nIMPORTED", json.dumps([m for m in {heavy} if m in sys.modules], separators=(",", ":")), code)
"""


def imported_by(*args: str) -> tuple[list[str], int, str]:
    """Run ``mlops ARGS`` in a fresh interpreter; the heavy modules it imported, its exit code, its output."""
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(heavy=HEAVY), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    last = done.stdout.rstrip().splitlines()[-1].split(" ", 2)
    assert last[0] == "IMPORTED", done.stdout + done.stderr
    return json.loads(last[1]), int(last[2] if last[2] != "None" else 0), done.stdout


def test_importing_the_cli_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys, mlops_pipelines.cli; print([m for m in {HEAVY} if m in sys.modules])"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["features", "--help"],
        ["models", "--help"],
        ["models", "promote", "--help"],
        ["reviews", "approve", "--help"],
        ["deployments", "--help"],
        ["datasets", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    modules, code, out = imported_by(*args)
    assert code == 0 and "Usage: mlops" in out
    assert modules == []


def test_the_catalog_commands_need_neither_mlflow_nor_dagster_nor_lightgbm() -> None:
    """`features list` reads the catalog (code): DuckDB and pandas come with the feature-view contract, MLflow,
    Dagster and LightGBM never."""
    for args in (["features", "list"], ["features", "hash"]):
        modules, code, out = imported_by(*args)
        assert code == 0, out
        assert not {"dagster", "mlflow", "lightgbm"} & set(modules), (args, modules)


def test_a_model_command_still_gets_what_it_needs(data_dir: Path) -> None:
    """The placebo: a command that reads the registry imports MLflow when it runs (and says the model is
    unknown: an empty store in a temporary data directory)."""
    modules, code, out = imported_by("models", "show", "nope")
    assert "mlflow" in modules and code == 2, out
