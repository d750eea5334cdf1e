"""Two runs that write the warehouse, at once, with the multiprocess executor on one persistent Dagster instance."""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance import DagsterInstance, InstanceRef

from mlops_pipelines.settings import REPO_ROOT
from mlops_pipelines_tests.conftest import finished, wait_until
from mlops_pipelines_tests.test_defs.conftest import DAY_RANGE, RUN_WORKER, go

pytestmark = pytest.mark.slow


def test_concurrent_runs_share_the_warehouse_pool_without_lock_errors(
    definitions: dg.Definitions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: list[subprocess.Popen]
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # the shipped config: pool limit 1
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # and the definitions fixture's data dir

    def start(name: str, job: str, *tags: str) -> subprocess.Popen:
        """A run worker (the multiprocess executor, as the daemon and the UI launch runs: every step in a
        process of its own, so independent feature views would run at once if the pool did not serialize
        them), loaded and waiting for "go"."""
        with (tmp_path / f"{name}.out").open("w") as out, (tmp_path / f"{name}.err").open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", RUN_WORKER, job, *tags, "--ready", str(tmp_path / f"{name}.ready")],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        processes.append(process)
        return process

    def log() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.err")))

    # the bars the feature run reads, ingested beforehand on the same instance
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert (
            definitions.resolve_job_def("ingestion_job").execute_in_process(instance=instance, tags=DAY_RANGE).success
        )

    # now two runs at once: more days of bars, and the feature job, both writing the same DuckDB file
    more_days = ["dagster/asset_partition_range_start=2026-01-09", "dagster/asset_partition_range_end=2026-01-12"]
    runs = {"ingestion": start("ingestion", "ingestion_job", *more_days), "features": start("features", "features_job")}
    for name, run in runs.items():
        wait_until(f"the {name} run worker is ready", (tmp_path / f"{name}.ready").exists, watch=[run], log=log)
    for run in runs.values():
        go(run)
    for name, run in runs.items():
        wait_until(f"the {name} run ends", finished(run), log=log)
        err = (tmp_path / f"{name}.err").read_text()
        assert run.returncode == 0, err[-3000:]
        assert "Could not set lock" not in err and "WarehouseLockTimeout" not in err

    # the pool serialized the warehouse steps, across the two runs and inside each: no two ever overlap
    run_ids = [(tmp_path / f"{name}.out").read_text().split()[-1] for name in runs]
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        intervals, windows, workers = [], {}, {}
        for run_id in run_ids:
            starts: dict[str, float] = {}
            for record in instance.all_logs(run_id):
                event = record.dagster_event
                if event is None:
                    continue
                if event.event_type in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS):
                    windows.setdefault(run_id, []).append(record.timestamp)
                elif event.event_type == dg.DagsterEventType.STEP_WORKER_STARTED:
                    workers[(run_id, event.step_key)] = event.pid
                elif event.event_type == dg.DagsterEventType.STEP_START and event.step_key:
                    starts[event.step_key] = record.timestamp
                elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key:
                    intervals.append((starts[event.step_key], record.timestamp, run_id))
    assert len({run for *_, run in intervals}) == 2
    for a, b in itertools.combinations(intervals, 2):
        assert a[1] <= b[0] or b[1] <= a[0], f"warehouse steps overlapped: {a} and {b}"
    # what makes it a test: the runs were under way at the same time, every step in a process of its own
    (start_a, end_a), (start_b, end_b) = windows.values()
    assert start_a < end_b and start_b < end_a, f"the runs did not overlap: {windows}"
    assert len(workers) == len(intervals) and len(set(workers.values())) == len(workers), workers
