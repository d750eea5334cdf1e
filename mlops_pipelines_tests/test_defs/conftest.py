"""Fixtures for Dagster-level tests: definitions loaded against a tmp data dir, a real test instance."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

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
