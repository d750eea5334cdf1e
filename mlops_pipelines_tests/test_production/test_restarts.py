"""Services restarted under a running pipeline: the MLflow tracking server during a training run, Redis during an
online-store refresh. The run retries through the outage or fails saying what was unreachable; nothing is left
half-written; the governance record (audit chain and its MLflow projection) verifies afterwards."""

import threading
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import redis
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from mlops_pipelines.catalog.models import MODEL_SPECS
from mlops_pipelines.lib.features.online_store_redis import (
    OnlineStoreUnavailable,
    RedisOnlineStoreReader,
    write_snapshot,
)
from mlops_pipelines_tests.conftest import wait_until
from mlops_pipelines_tests.services import MlflowServer, start_redis
from mlops_pipelines_tests.test_defs.conftest import run_job, settings_lifecycle

DAYS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-14"}


def running_runs(url: str) -> list[str]:
    """The MLflow runs RUNNING on the server now (an empty list while it is down)."""
    try:
        client = MlflowClient(tracking_uri=url)
        ids = [e.experiment_id for e in client.search_experiments()]
        return [r.info.run_id for r in client.search_runs(ids, "attributes.status = 'RUNNING'")] if ids else []
    except Exception:  # the server is restarting: nothing to see yet
        return []


@pytest.mark.slow
def test_an_mlflow_server_restart_during_training_retries_or_fails_clearly(
    production_env: MlflowServer, production_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "6")
    from mlops_pipelines.definitions import defs

    definitions = defs()
    run_job(definitions, production_instance, "ingestion_job", tags=DAYS)
    run_job(definitions, production_instance, "features_job")

    restarted: list[str] = []

    def restart_when_training_starts() -> None:  # the server goes down while a training run is RUNNING
        [run_id, *_] = wait_until("a training run is RUNNING", lambda: running_runs(production_env.url))
        production_env.service.restart()
        restarted.append(run_id)

    watcher = threading.Thread(target=restart_when_training_starts, daemon=True)
    watcher.start()
    result = run_job(definitions, production_instance, "training_job", raise_on_error=False)
    watcher.join(timeout=600)
    assert restarted, "the MLflow server was never restarted during the training run"

    client = MlflowClient(tracking_uri=production_env.url)
    if not result.success:  # failed: it says what was unreachable
        failures = [e for e in result.all_events if e.is_step_failure]
        assert failures and any("mlflow" in str(e.step_failure_data.error).lower() for e in failures), failures
    # nothing half-written: every version the registry holds has its audit history, the chain verifies, no run
    # is left RUNNING by the steps that ran
    with settings_lifecycle() as lifecycle:
        for model in MODEL_SPECS:
            _, problems = lifecycle.verify(model)
            assert problems == [], f"{model}: {problems}"
            if result.success:
                assert lifecycle.newest(model) == "1"
    assert client.get_run(restarted[0]).info.status in (
        RunStatus.to_string(RunStatus.FINISHED),
        RunStatus.to_string(RunStatus.FAILED),
    )


def snapshot(n: int, value: float) -> pd.DataFrame:
    return pd.DataFrame({"entity_key": [f"E{i:06d}" for i in range(n)], "x": [value] * n, "y": [value + 1] * n})


def test_a_redis_restart_during_a_refresh_leaves_the_previous_snapshot_whole(tmp_path: Path) -> None:
    """A persistent Redis (append-only file) restarted while a refresh writes its staging hash: the writer fails
    with ``OnlineStoreUnavailable`` naming the store, readers get the previous snapshot whole after the restart
    (never a mix), the abandoned staging hash carries its expiry, and the refresh run again succeeds."""
    service, url = start_redis(tmp_path)
    try:
        write_snapshot(url, snapshot(50, 1.0), key="entity_key", snapshot_id="before")
        big = snapshot(400_000, 2.0)
        failure: list[BaseException] = []

        def refresh() -> None:
            try:
                write_snapshot(url, big, key="entity_key", snapshot_id="during")
            except BaseException as exc:
                failure.append(exc)

        writer = threading.Thread(target=refresh)
        writer.start()
        probe = redis.Redis.from_url(url)
        wait_until("the refresh is writing its staging hash", lambda: probe.keys("mlops:online:staging:*"))
        service.restart()  # SIGTERM: Redis writes its append-only file and exits; then up again, same port
        writer.join(timeout=600)
        assert failure and isinstance(failure[0], OnlineStoreUnavailable), failure
        assert "127.0.0.1" in str(failure[0])

        reader = RedisOnlineStoreReader(url)
        assert reader.snapshot_id() == "before"
        found = reader.lookup([f"E{i:06d}" for i in range(60)])
        assert [found[f"E{i:06d}"] is not None for i in range(60)] == [True] * 50 + [False] * 10
        assert {row["x"] for row in found.values() if row} == {1.0}
        client = redis.Redis.from_url(url)
        for key in client.keys("mlops:online:staging:*"):
            assert client.ttl(key) > 0, f"{key!r} would live on"
        write_snapshot(url, big.head(1000), key="entity_key", snapshot_id="after")
        assert RedisOnlineStoreReader(url).snapshot_id() == "after"
    finally:
        service.stop()
