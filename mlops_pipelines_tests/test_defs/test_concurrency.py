"""Two runs that write the warehouse, in two processes at once, on one persistent Dagster instance."""

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

RUN_JOB = textwrap.dedent("""
    import sys
    import dagster as dg
    from mlops_pipelines.definitions import defs
    tags = dict(arg.split("=", 1) for arg in sys.argv[2:])
    result = defs().resolve_job_def(sys.argv[1]).execute_in_process(instance=dg.DagsterInstance.get(), tags=tags)
    print(result.run_id)
    sys.exit(0 if result.success else 1)
""")


def test_concurrent_runs_share_the_warehouse_pool_without_lock_errors(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # the shipped config: pool limit 1
    env = {
        **os.environ,
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

    # the pool serialized the warehouse steps across the two runs: their executions never overlap
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
    for start_a, end_a, run_a in intervals:
        for start_b, end_b, run_b in intervals:
            if run_a != run_b:
                assert end_a <= start_b or end_b <= start_a, "warehouse steps of two runs overlapped"
