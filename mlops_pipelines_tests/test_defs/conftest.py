"""Fixtures for Dagster-level tests: definitions loaded against a tmp data dir, a real test instance."""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, open_lifecycle
from mlops_pipelines.settings import Settings

RUN_WORKER = "mlops_pipelines_tests.test_defs.run_worker"  # python -m RUN_WORKER: a run outside a code server
DAY_RANGE = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-08"}


@pytest.fixture
def definitions(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "8")
    from mlops_pipelines.definitions import defs

    return defs()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Every process group (``start_new_session=True``) the test starts; all killed at the end, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def go(run_worker: subprocess.Popen) -> None:
    """Start the run of a RUN_WORKER started with ``--ready`` and ``stdin=PIPE``."""
    assert run_worker.stdin is not None
    run_worker.stdin.write("go\n")
    run_worker.stdin.close()


def settings_tracking() -> Tracking:
    settings = Settings.from_env()
    return Tracking(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root)


@contextmanager
def settings_lifecycle() -> Iterator[Lifecycle]:
    """The lifecycle the definitions' resources use (same warehouse, MLflow store and audit key)."""
    settings = Settings.from_env()
    with open_lifecycle(settings_tracking().client(), settings.warehouse_path, settings.audit_key_file) as lifecycle:
        yield lifecycle


def run_job(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    *,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return definitions.resolve_job_def(name).execute_in_process(
        instance=instance, tags=tags or {}, run_config=run_config or {}, raise_on_error=raise_on_error
    )
