"""The raw-folder sensor: one run per range of touched days, deterministic run keys, JSON cursor."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.defs.ingestion import sensors
from mlops_pipelines.defs.ingestion.sensors import raw_files_sensor
from mlops_pipelines.lib.ingestion import raw_folder
from mlops_pipelines.resources import MarketDataSource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def evaluate(raw_dir: Path, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"market_data": MarketDataSource(kind="folder", raw_dir=str(raw_dir))},
    )
    result = raw_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def days_of(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key:
        return request.partition_key, request.partition_key
    return request.tags[RANGE_START], request.tags[RANGE_END]


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    path = tmp_path / "raw"
    path.mkdir()
    (path / "jan.csv").write_text(
        HEADER + "AAA,2026-01-02T00:00:00Z,10,11,9,10.5,100\nAAA,2026-01-03T05:00:00Z,10,11,9,10.5,100\n"
        "AAA,garbage,10,11,9,10.5,100\n"
    )
    return path


def test_new_file_requests_one_run_for_its_days(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    first = evaluate(raw_dir, instance, None)
    [request] = first.run_requests or []
    assert days_of(request) == ("2026-01-02", "2026-01-03")  # a partition range: one run reads the file once
    assert request.run_key and request.run_key.startswith("ingest:2026-01-02..2026-01-03:")
    assert str(raw_dir / "jan.csv") in json.loads(first.cursor or "{}")["files"]
    # same evaluation again: identical run keys (Dagster dedupes them); with the cursor: nothing new
    assert [r.run_key for r in evaluate(raw_dir, instance, None).run_requests or []] == [request.run_key]
    assert not evaluate(raw_dir, instance, first.cursor).run_requests


def test_many_files_request_one_run_per_range_of_days(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    for day in range(1, 31):
        (raw_dir / f"2026-03-{day:02d}.csv").write_text(HEADER + f"AAA,2026-03-{day:02d}T00:00:00Z,10,11,9,10.5,100\n")
    (raw_dir / "backfill.csv").write_text(  # hourly bars (two a day): one bar a day would be daily bars, refused
        HEADER + "".join(f"AAA,2026-02-{d:02d}T{h:02d}:00:00Z,10,11,9,10.5,100\n" for d in range(1, 29) for h in (0, 1))
    )
    requests = evaluate(raw_dir, instance, None).run_requests or []
    assert sorted(days_of(r) for r in requests) == [("2026-01-02", "2026-01-03"), ("2026-02-01", "2026-03-30")]


def test_unchanged_files_are_not_read_again(
    raw_dir: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = evaluate(raw_dir, instance, None)
    refreshed: list[Path] = []
    parsed: list[Path] = []
    original_refresh, original_read = raw_folder.FolderIndex.refresh, raw_folder.read_source_file
    monkeypatch.setattr(
        raw_folder.FolderIndex,
        "refresh",
        lambda self, path, needed=None: refreshed.append(path) or original_refresh(self, path, needed),
    )
    monkeypatch.setattr(
        raw_folder, "read_source_file", lambda path, data=None: parsed.append(path) or original_read(path, data)
    )
    assert not evaluate(raw_dir, instance, first.cursor).run_requests
    assert refreshed == []  # same size and mtime: not even hashed
    os.utime(raw_dir / "jan.csv", ns=(1, 1))  # touched, same content: looked at once, nothing requested
    touched = evaluate(raw_dir, instance, first.cursor)
    assert refreshed == [raw_dir / "jan.csv"] and not touched.run_requests
    old_format = json.dumps(
        {path: entry["sha256"] for path, entry in json.loads(first.cursor or "{}")["files"].items()}
    )
    assert not evaluate(raw_dir, instance, old_format).run_requests  # a cursor written before: still no rerun


def test_changed_file_gets_new_run_keys(raw_dir: Path, instance: dg.DagsterInstance) -> None:
    first = evaluate(raw_dir, instance, None)
    with (raw_dir / "jan.csv").open("a") as handle:
        handle.write("BBB,2026-01-04T00:00:00Z,10,11,9,10.5,100\n")
    second = evaluate(raw_dir, instance, first.cursor)
    assert [days_of(r) for r in second.run_requests or []] == [("2026-01-02", "2026-01-04")]
    assert not {r.run_key for r in first.run_requests or []} & {r.run_key for r in second.run_requests or []}


def test_unreadable_files_and_files_with_no_bar_in_a_partition_send_the_first_partition(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Their rows are quarantined (and the unreadable files listed) by the first partition's run."""
    for name, text in {
        "broken.csv": "symbol,timestamp\nAAA,2026-01-02T00:00:00Z\n",
        "old.csv": HEADER + "AAA,1900-01-01T00:00:00Z,10,11,9,10.5,100\nAAA,2031-01-01T00:00:00Z,10,11,9,10.5,100\n",
        "garbage.csv": HEADER + "AAA,not a time,10,11,9,10.5,100\n",
        "empty.csv": "",
    }.items():
        (tmp_path / name).write_text(text)
        result = evaluate(tmp_path, instance, None)
        assert [days_of(r) for r in result.run_requests or []] == [("2026-01-01", "2026-01-01")], name
        assert str(tmp_path / name) in json.loads(result.cursor or "{}")["files"]
        (tmp_path / name).unlink()


def test_days_after_the_last_partition_wait_in_the_cursor(
    raw_dir: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors, "_now", lambda: datetime(2026, 1, 3, 12, tzinfo=UTC))  # last partition: 01-02
    first = evaluate(raw_dir, instance, None)
    assert [days_of(r) for r in first.run_requests or []] == [("2026-01-02", "2026-01-02")]
    assert json.loads(first.cursor or "{}")["pending"] == ["2026-01-03"]
    assert not evaluate(raw_dir, instance, first.cursor).run_requests  # its partition does not exist yet
    monkeypatch.setattr(sensors, "_now", lambda: datetime(2026, 1, 4, 0, 5, tzinfo=UTC))
    released = evaluate(raw_dir, instance, first.cursor)
    assert [days_of(r) for r in released.run_requests or []] == [("2026-01-03", "2026-01-03")]
    assert json.loads(released.cursor or "{}")["pending"] == []
    assert not evaluate(raw_dir, instance, released.cursor).run_requests


def test_bars_before_the_first_partition_are_reported_once_per_change(
    raw_dir: Path, instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    for symbol in ("AAA", "BBB", "CCC"):
        rows = [f"{symbol},{t:%Y-%m-%dT%H:%M:%SZ},10,11,9,10.5,100\n" for t in pd_hours("2019-01-02", 336)]
        (raw_dir / f"{symbol}.csv").write_text(HEADER + "".join(rows))
    capfd.readouterr()
    first = evaluate(raw_dir, instance, None)
    told = [line for line in capfd.readouterr().err.splitlines() if "MLOPS_MARKET_START" in line]
    assert len(told) == 1 and told[0].endswith(
        f"bars start 2019-01-02 ({raw_dir / 'AAA.csv'} and 2 more files), the first partition is 2026-01-01: "
        "set MLOPS_MARKET_START=2019-01-02 to ingest them; until then the bars before 2026-01-01 are "
        "quarantined under partition key __outside_partitions__, not ingested"
    )
    # the first partition's run quarantines them (never dropped); the next tick, nothing changed: no message
    assert [days_of(r) for r in first.run_requests or []] == [("2026-01-01", "2026-01-03")]
    evaluate(raw_dir, instance, first.cursor)
    assert "MLOPS_MARKET_START" not in capfd.readouterr().err


def test_a_file_of_another_frequency_sends_the_first_partition_with_the_reason(
    raw_dir: Path, instance: dg.DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    (raw_dir / "daily.csv").write_text(HEADER + "".join(f"AAA,2026-02-{d:02d},10,11,9,10.5,100\n" for d in range(2, 9)))
    requests = evaluate(raw_dir, instance, None).run_requests or []
    # the first partition's run lists it in raw.quarantined_files (with jan.csv's days); its own days: no run
    assert [days_of(r) for r in requests] == [("2026-01-01", "2026-01-03")]
    assert f"{raw_dir / 'daily.csv'}: bars 1d apart" in capfd.readouterr().err


def pd_hours(start: str, n: int) -> list[datetime]:
    return [datetime.fromisoformat(start).replace(tzinfo=UTC) + timedelta(hours=h) for h in range(n)]
