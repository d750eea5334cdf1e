"""Two runs that write the warehouse, at once, with the multiprocess executor on one persistent Dagster instance."""

import itertools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance import DagsterInstance, InstanceRef

from mlops_pipelines.settings import REPO_ROOT

pytestmark = pytest.mark.slow

JOBS_MODULE = textwrap.dedent("""
    from mlops_pipelines.definitions import defs

    def ingestion_job():
        return defs().resolve_job_def("ingestion_job")

    def features_job():
        return defs().resolve_job_def("features_job")
""")
# The multiprocess executor, as the daemon and the UI launch runs: every step in a process of its own, so the
# independent feature views would run at once if the pool did not serialize them.
RUN_JOB = textwrap.dedent("""
    import sys
    import dagster as dg
    import jobs_for_test
    tags = dict(arg.split("=", 1) for arg in sys.argv[2:])
    with dg.DagsterInstance.get() as instance:
        job = dg.reconstructable(getattr(jobs_for_test, sys.argv[1]))
        result = dg.execute_job(job, instance=instance, tags=tags)
        print(result.run_id)
        sys.exit(0 if result.success else 1)
""")


def test_concurrent_runs_share_the_warehouse_pool_without_lock_errors(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # the shipped config: pool limit 1
    (tmp_path / "jobs_for_test.py").write_text(JOBS_MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        "DAGSTER_HOME": str(home),
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "MLOPS_SYNTHETIC_SYMBOLS": "12",
    }

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", RUN_JOB, *args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    days = ["dagster/asset_partition_range_start=2026-01-01", "dagster/asset_partition_range_end=2026-01-20"]
    first = start("ingestion_job", *days)
    assert first.wait(timeout=300) == 0, first.communicate()[1][-3000:]
    # now two runs at once: another ingestion range and the feature job, both writing the same DuckDB file
    runs = [
        start(
            "ingestion_job",
            "dagster/asset_partition_range_start=2026-01-21",
            "dagster/asset_partition_range_end=2026-02-05",
        ),
        start("features_job"),
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
        assert "Could not set lock" not in err and "WarehouseLockTimeout" not in err

    # the pool serialized the warehouse steps, across the two runs and inside each: no two ever overlap
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        intervals = []
        for out, _ in outputs:
            run_id = out.strip().splitlines()[-1]
            starts: dict[str, float] = {}
            for record in instance.all_logs(run_id):
                event = record.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == dg.DagsterEventType.STEP_START:
                    starts[event.step_key] = record.timestamp
                elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                    intervals.append((starts[event.step_key], record.timestamp, run_id))
    assert len({run for *_, run in intervals}) == 2
    for a, b in itertools.combinations(intervals, 2):
        assert a[1] <= b[0] or b[1] <= a[0], f"warehouse steps overlapped: {a} and {b}"
