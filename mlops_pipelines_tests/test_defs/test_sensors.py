"""The raw-folder sensor: run requests per touched day, deterministic run keys, JSON cursor."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.defs.ingestion import sensors
from mlops_pipelines.defs.ingestion.sensors import raw_files_sensor
from mlops_pipelines.lib.files import sha256_file
from mlops_pipelines.resources import MarketDataSource


def evaluate(raw_dir: Path, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"market_data": MarketDataSource(kind="folder", raw_dir=str(raw_dir))},
    )
    result = raw_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    path = tmp_path / "raw"
    path.mkdir()
    (path / "jan.csv").write_text(
        "symbol,timestamp,open,high,low,close,volume\n"
        "AAA,2026-01-02T00:00:00Z,10,11,9,10.5,100\n"
        "AAA,2026-01-03T05:00:00Z,10,11,9,10.5,100\n"
        "AAA,garbage,10,11,9,10.5,100\n"
    )
    return path


def test_new_file_requests_each_day_once(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    first = evaluate(raw_dir, instance, None)
    requests = first.run_requests or []
    assert sorted(r.partition_key for r in requests) == ["2026-01-02", "2026-01-03"]
    assert all(r.run_key and r.run_key.startswith(f"ingest:{raw_dir / 'jan.csv'}:") for r in requests)
    assert str(raw_dir / "jan.csv") in json.loads(first.cursor or "{}")
    # same evaluation again: identical run keys (Dagster dedupes them); with the cursor: nothing new
    assert [r.run_key for r in evaluate(raw_dir, instance, None).run_requests or []] == [r.run_key for r in requests]
    assert not evaluate(raw_dir, instance, first.cursor).run_requests


def test_unchanged_files_are_not_read_again(
    raw_dir: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = evaluate(raw_dir, instance, None)
    hashed: list[Path] = []
    monkeypatch.setattr(sensors, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    assert not evaluate(raw_dir, instance, first.cursor).run_requests
    assert hashed == []  # same size and mtime: not even hashed
    os.utime(raw_dir / "jan.csv", ns=(1, 1))  # touched, same content: hashed once, nothing requested
    touched = evaluate(raw_dir, instance, first.cursor)
    assert hashed == [raw_dir / "jan.csv"] and not touched.run_requests
    old_format = json.dumps({path: entry["sha256"] for path, entry in json.loads(first.cursor or "{}").items()})
    assert not evaluate(raw_dir, instance, old_format).run_requests  # a cursor written before: still no rerun


def test_changed_file_gets_new_run_keys(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    first = evaluate(raw_dir, instance, None)
    with (raw_dir / "jan.csv").open("a") as handle:
        handle.write("BBB,2026-01-04T00:00:00Z,10,11,9,10.5,100\n")
    second = evaluate(raw_dir, instance, first.cursor)
    keys_before = {r.run_key for r in first.run_requests or []}
    assert sorted(r.partition_key for r in second.run_requests or []) == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert not keys_before & {r.run_key for r in second.run_requests or []}


def test_broken_file_is_logged_not_retried(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    (raw_dir / "broken.csv").write_text("symbol,timestamp\nAAA,2026-01-02T00:00:00Z\n")
    result = evaluate(raw_dir, instance, None)
    assert all("broken.csv" not in (r.run_key or "") for r in result.run_requests or [])
    assert len(result.run_requests or []) == 2  # the good file still goes through
    assert str(raw_dir / "broken.csv") in json.loads(result.cursor or "{}")
