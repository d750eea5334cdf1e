"""Ingestion and features materialized on a real Dagster instance, DuckDB file and SQLite online store."""

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.defs.resources import resources_for
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.features.online_store import OnlineStoreReader
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_defs.conftest import DAY_RANGE, run_job

BARS = dg.AssetKey(["raw", "market_bars"])


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every message along the cause chain of the run's step failures."""
    messages = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.is_step_failure else None
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return "\n".join(messages)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_ingestion_validates_and_reruns_replace(definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
    result = run_job(definitions, instance, "ingestion_job", tags=DAY_RANGE)
    bars_mats = [m for m in result.get_asset_materialization_events() if m.asset_key == BARS]
    assert sorted(m.partition for m in bars_mats) == [f"2026-01-0{d}" for d in range(1, 9)]
    metadata = bars_mats[0].materialization.metadata
    quarantine_check = check_results(result)["market_bars_quarantine_ratio"]
    assert quarantine_check.passed
    assert 0 < quarantine_check.metadata["observed"].value < quarantine_check.metadata["threshold"].value

    settings = Settings.from_env()
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        stored = warehouse.row_count(conn, "raw.market_bars")
        quarantined = conn.execute("SELECT reason, source_file, partition_key FROM raw.quarantined_bars").fetchall()
    assert metadata["rows_in_run"].value == stored and metadata["days_in_run"].value == 8
    assert stored + len(quarantined) == 8 * 8 * 24  # 8 days x 8 symbols x 24 bars: nothing lost
    assert quarantined and all(reason and source == "synthetic" for reason, source, _ in quarantined)

    # re-materializing one day replaces it: same counts, no duplicates
    again = run_job(definitions, instance, "ingestion_job", tags={"dagster/partition": "2026-01-03"})
    assert again.success
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        assert warehouse.row_count(conn, "raw.market_bars") == stored
        assert warehouse.row_count(conn, "raw.quarantined_bars") == len(quarantined)


def test_quarantine_ratio_check_blocks_above_threshold(
    definitions: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    config = {"ops": {"market_bars": {"config": {"max_quarantine_ratio": 0.0}}}}
    result = run_job(definitions, instance, "ingestion_job", tags=DAY_RANGE, run_config=config, raise_on_error=False)
    evaluation = check_results(result)["market_bars_quarantine_ratio"]
    assert not evaluation.passed
    assert evaluation.metadata["observed"].value > 0 == evaluation.metadata["threshold"].value
    # blocking: the step fails, so nothing downstream of the bars runs on this data
    assert not result.success
    assert "market_bars_quarantine_ratio" in failure_messages(result)


def test_features_after_ingestion(definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
    run_job(definitions, instance, "ingestion_job", tags=DAY_RANGE)
    result = run_job(definitions, instance, "features_job")
    catalog = load_catalog()
    checks = check_results(result)
    for name in catalog.views:
        assert checks[f"{name}_declared_schema"].passed
    materializations = {
        m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()
    }
    assert materializations["features/catalog"]["feature_graph_hash"].value == catalog.graph_hash()
    returns = materializations["features/returns"]
    assert returns["dagster/table_name"].value == "features.returns__v3"
    assert [c.name for c in returns["dagster/column_schema"].value.columns][:4] == [
        "symbol",
        "event_ts",
        "created_ts",
        "ret_1b",
    ]

    settings = Settings.from_env()
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        registry = conn.execute(
            "SELECT name, row_count, dagster_run_id, feature_graph_hash FROM features.catalog"
        ).fetchall()
        bars = warehouse.row_count(conn, "raw.market_bars")
    assert {r[0] for r in registry} == set(catalog.views)
    assert all(r[1] == bars and r[2] == result.run_id and r[3] == catalog.graph_hash() for r in registry)
    # the registry alone, re-run later: each view still names the run that materialized it
    again = definitions.resolve_job_def("features_job").execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["features", "catalog"])]
    )
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        runs = {r[0] for r in conn.execute("SELECT dagster_run_id FROM features.catalog").fetchall()}
    assert again.success and runs == {result.run_id}

    reader = OnlineStoreReader(settings.online_store_path)
    vector = reader.lookup_one("SYM0003")
    assert vector is not None and set(catalog.views["oscillators"].features) <= set(vector)
    assert reader.snapshot_id() == result.run_id


def write_csv(path: Path, rows: list[str], header: str = "symbol,timestamp,open,high,low,close,volume,sector") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


@pytest.fixture
def folder_definitions(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("MLOPS_MARKET_SOURCE", "folder")
    from mlops_pipelines.definitions import defs

    return defs()


def test_folder_source_quarantines_bad_rows_with_file_and_line(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    write_csv(
        data_dir / "raw" / "a.csv",
        [
            "AAA,2026-01-02T00:00:00Z,10,11,9,10.5,100,tech",
            "AAA,2026-01-02T01:00:00Z,10,11,9,,100,tech",
            "AAA,not-a-time,10,11,9,10,100,tech",
            "BBB,2026-01-02T02:00:00+01:00,10,11,9,10.5,100,energy",  # 01:00 UTC
        ],
    )
    tolerant = {"ops": {"market_bars": {"config": {"max_quarantine_ratio": 1.0}}}}
    result = run_job(
        folder_definitions, instance, "ingestion_job", tags={"dagster/partition": "2026-01-02"}, run_config=tolerant
    )
    assert result.success
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        accepted = conn.execute('SELECT symbol, "timestamp" FROM raw.market_bars ORDER BY ALL').fetchall()
        bad = conn.execute("SELECT source_row, reason, partition_key FROM raw.quarantined_bars ORDER BY 1").fetchall()
    assert [a[0] for a in accepted] == ["AAA", "BBB"]
    assert bad == [
        (3, "close: missing or not a finite number", "2026-01-02"),
        (4, "timestamp: missing or unparseable", "__unparseable__"),
    ]
    # running the day again replaces both tables' rows for it, including the unparseable ones of that file
    assert run_job(
        folder_definitions, instance, "ingestion_job", tags={"dagster/partition": "2026-01-02"}, run_config=tolerant
    ).success
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        assert warehouse.row_count(conn, "raw.quarantined_bars") == 2


def test_a_corrected_file_is_a_revision_available_from_its_arrival(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    rows = [f"AAA,2026-01-02T{h:02d}:00:00Z,10,11,9,10.5,100,tech" for h in range(24)]
    write_csv(data_dir / "raw" / "a.csv", rows)
    day = {"dagster/partition": "2026-01-02"}
    run_job(folder_definitions, instance, "ingestion_job", tags=day)
    run_job(folder_definitions, instance, "ingestion_job", tags=day)  # the same file again: nothing changes
    rows[5] = "AAA,2026-01-02T05:00:00Z,10,11,9,10.8,100,tech"  # the vendor corrects one close
    write_csv(data_dir / "raw" / "a.csv", rows)
    before = datetime.now(UTC)
    result = run_job(folder_definitions, instance, "ingestion_job", tags=day)
    run_job(folder_definitions, instance, "features_job")

    [meta] = [
        m.metadata for m in result.asset_materializations_for_node("market_bars") if m.metadata.get("revised_bars")
    ]
    assert meta["revised_bars"].value == 1 and meta["withdrawn_bars"].value == 0
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        revised = conn.execute(
            'SELECT close, available_at FROM raw.market_bars WHERE "timestamp" = ?',
            [datetime(2026, 1, 2, 5, tzinfo=UTC)],
        ).fetchone()
        kept = conn.execute("SELECT close, available_at, reason FROM raw.market_bar_revisions").fetchall()
        created = dict(conn.execute("SELECT hour(event_ts), created_ts FROM features.returns__v3").fetchall())
    assert revised is not None and revised[0] == 10.8 and revised[1] >= before  # served from its arrival only
    assert kept == [(10.5, datetime(2026, 1, 2, 6, tzinfo=UTC), "revised")]  # the old version: nothing lost
    # every value computed from the corrected bar (its own, the next bars' 1h and 4h returns) waits for it;
    # the values before it and those that do not read it keep their bar's arrival time
    late = sorted(hour for hour, ts in created.items() if ts >= before)
    assert late == [6, 7, 10]  # the 05:00 bar has event time 06:00; ret_1b at 07:00 and ret_4b at 10:00 read it


def test_symbol_universe_from_the_environment(
    data_dir: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    universe = data_dir / "universe.txt"
    universe.parent.mkdir(parents=True, exist_ok=True)
    universe.write_text("# the desk's symbols\nAAA\n\nBBB  # energy\n")
    monkeypatch.setenv("MLOPS_MARKET_SOURCE", "folder")
    monkeypatch.setenv("MLOPS_SYMBOL_UNIVERSE", str(universe))
    from mlops_pipelines.definitions import defs

    write_csv(
        data_dir / "raw" / "a.csv",
        [f"{symbol},2026-01-02T00:00:00Z,10,11,9,10.5,100,tech" for symbol in ("AAA", "BBB", "TYPO")],
    )
    tolerant = {"ops": {"market_bars": {"config": {"max_quarantine_ratio": 1.0}}}}
    run_job(defs(), instance, "ingestion_job", tags={"dagster/partition": "2026-01-02"}, run_config=tolerant)
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        accepted = [r[0] for r in conn.execute("SELECT symbol FROM raw.market_bars ORDER BY 1").fetchall()]
        quarantined = conn.execute("SELECT symbol, reason FROM raw.quarantined_bars").fetchall()
    assert accepted == ["AAA", "BBB"]
    assert quarantined == [("TYPO", "symbol: not in the symbol universe")]


TOLERANT = {"ops": {"market_bars": {"config": {"max_quarantine_ratio": 1.0}}}}
DAY = {"dagster/partition": "2026-01-02"}


def stored(query: str) -> list[tuple]:
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        return conn.execute(query).fetchall()


def alerts_of(data_dir: Path, kind: str) -> list[dict]:
    path = data_dir / "alerts" / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["kind"] == kind]


def unreadable_files(raw: Path) -> dict[str, str]:
    """name -> the reason expected in raw.quarantined_files."""
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "empty.csv").write_bytes(b"")
    (raw / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    pd.DataFrame({"symbol": ["AAA"]}).to_parquet(raw / "corrupt.parquet")
    (raw / "corrupt.parquet").write_bytes((raw / "corrupt.parquet").read_bytes()[:-30])
    write_csv(
        raw / "twice.csv", ["AAA,2026-01-02T05:00:00Z,10,11,9,10.5,10.5,100"], header=HEADER.replace("sector", "close")
    )
    write_csv(
        raw / "no_close.csv", ["AAA,2026-01-02T06:00:00Z,10,11,9,100"], header="symbol,timestamp,open,high,low,volume"
    )
    return {
        "empty.csv": "empty file (0 bytes)",
        "image.csv": "line 1: not UTF-8 text",
        "corrupt.parquet": "not a readable Parquet file",
        "twice.csv": "line 1: duplicate column 'close' (columns 6 and 8)",
        "no_close.csv": "missing required column 'close'",
    }


def test_unreadable_files_are_quarantined_and_alerted_while_good_files_flow(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    raw = data_dir / "raw"
    write_csv(raw / "good.csv", [f"AAA,2026-01-02T{h:02d}:00:00Z,10,11,9,10.5,100,tech" for h in range(3)])
    expected = unreadable_files(raw)
    result = run_job(folder_definitions, instance, "ingestion_job", tags=DAY)
    assert result.success
    assert stored("SELECT count(*) FROM raw.market_bars") == [(3,)]
    files = {
        Path(p).name: (reason, size, run)
        for p, reason, size, run in stored("SELECT path, reason, size, first_seen_run_id FROM raw.quarantined_files")
    }
    assert set(files) == set(expected)
    for name, (reason, size, run) in files.items():
        assert reason.startswith(str(raw / name)) and expected[name] in reason, reason  # names the file (and line)
        assert size == (raw / name).stat().st_size and run == result.run_id
    alerts = alerts_of(data_dir, "file_quarantined")
    assert sorted(Path(a["subject"]).name for a in alerts) == sorted(expected)

    # again: nothing new is alerted, first-seen stays; a fixed file leaves the list; a good file that turns
    # corrupt keeps the bars it delivered (not withdrawn) until it is fixed or removed
    write_csv(raw / "no_close.csv", ["AAA,2026-01-02T06:00:00Z,10,11,9,10.5,100,tech"])
    (raw / "good.csv").write_bytes(b"\x00\xff garbage")
    again = run_job(folder_definitions, instance, "ingestion_job", tags=DAY)
    rows = stored("SELECT path, first_seen_run_id, last_seen_run_id FROM raw.quarantined_files ORDER BY path")
    assert sorted(Path(p).name for p, _, _ in rows) == sorted({*expected, "good.csv"} - {"no_close.csv"})
    assert {(Path(p).name, first == result.run_id, last == again.run_id) for p, first, last in rows} >= {
        ("empty.csv", True, True)
    }
    assert stored("SELECT count(*) FROM raw.market_bars") == [(4,)]  # 3 kept + the fixed file's bar
    assert sorted(Path(a["subject"]).name for a in alerts_of(data_dir, "file_quarantined")) == sorted(
        [*expected, "good.csv"]
    )


def test_a_nul_byte_in_a_symbol_is_quarantined_not_cut(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    write_csv(
        data_dir / "raw" / "a.csv",
        ["A\x00A,2026-01-02T00:00:00Z,10,11,9,10.5,100,tech", "BBB,2026-01-02T00:00:00Z,10,11,9,10.5,100,tech"],
    )
    assert run_job(folder_definitions, instance, "ingestion_job", tags=DAY, run_config=TOLERANT).success
    assert stored("SELECT symbol FROM raw.market_bars") == [("BBB",)]
    assert stored("SELECT symbol, length(symbol), reason FROM raw.quarantined_bars") == [
        ("A\x00A", 3, "symbol: contains control characters")
    ]


HEADER = "symbol,timestamp,open,high,low,close,volume,sector"


def bar(symbol: str, ts: str, close: str = "10.5") -> str:
    return f"{symbol},{ts},10,11,9,{close},100,tech"


def data_rows(path: Path) -> int:
    """Rows as a person counts them: Parquet rows; CSV lines after the header that hold any value."""
    if path.suffix == ".parquet":
        return len(pd.read_parquet(path))
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip(","))


def corpus(raw: Path) -> tuple[dict[str, str], str]:
    """Good files, bad rows, rows outside the partitions, files with no bar in any, duplicates across files and
    unreadable files. Returns the unreadable ones and tomorrow's bar time."""
    tomorrow = (pd.Timestamp.now(tz="UTC").floor("h") + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for day in ("2026-01-02", "2026-01-03"):
        write_csv(raw / f"{day}.csv", [bar(s, f"{day}T{h:02d}:00:00Z") for s in ("AAA", "BBB") for h in range(24)])
    frame = pd.DataFrame(
        [
            dict(zip(HEADER.split(","), bar("CCC", f"2026-01-04T{h:02d}:00:00Z").split(","), strict=True))
            for h in range(24)
        ]
    )
    frame.to_parquet(raw / "2026-01-04.parquet")
    write_csv(
        raw / "bad_rows.csv",
        [
            bar("DDD", "2026-01-02T00:00:00Z", close=""),
            bar("DDD", "2026-01-02T01:00:00Z").replace(",11,9,", ",8,9,"),  # high < low
            bar("DDD", "not a time"),
            bar("DDD", "2026-01-02T01:30:00Z"),
            bar("DDD", "2026-01-02T02:00:00Z") + ",extra",
            bar("D\x00D", "2026-01-02T03:00:00Z"),
            "",
            bar("DDD", "2026-01-03T04:00:00Z"),  # accepted
        ],
    )
    write_csv(
        raw / "out_of_range.csv",
        [bar("EEE", "1900-01-01T00:00:00Z"), bar("EEE", "2030-06-01T00:00:00Z"), bar("EEE", tomorrow)]
        + [bar("EEE", f"2026-01-03T{h:02d}:00:00Z") for h in range(3)],
    )
    write_csv(raw / "all_outside.csv", [bar("FFF", "1900-01-01T00:00:00Z"), bar("FFF", "2031-01-01T05:00:00Z")])
    write_csv(raw / "unparseable.csv", [bar("GGG", "yesterday"), bar("GGG", "2026-13-45T00:00:00Z")])
    # a later delivery repeats six bars of 2026-01-02, two with other values: it arrived later, it wins
    write_csv(
        raw / "a_resend.csv", [bar("AAA", f"2026-01-02T{h:02d}:00:00Z", "10.7" if h < 2 else "10.5") for h in range(6)]
    )
    os.utime(raw / "a_resend.csv", ns=(time.time_ns(), time.time_ns() + 10**9))
    return unreadable_files(raw), tomorrow


def run_requests(definitions: dg.Definitions, instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    for request in requests:
        tags = {"dagster/partition": request.partition_key} if request.partition_key else dict(request.tags)
        assert run_job(definitions, instance, "ingestion_job", tags=tags, run_config=TOLERANT).success


def test_every_row_of_every_file_ends_in_exactly_one_table(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    """Sum of data rows in the readable files == accepted + quarantined rows, the unreadable files are listed,
    whatever the sensor requested was enough, and running it all again duplicates nothing."""
    raw = data_dir / "raw"
    unreadable, tomorrow = corpus(raw)
    readable = [p for p in raw.iterdir() if p.name not in unreadable]
    rows_in = sum(data_rows(p) for p in readable)
    sensor = folder_definitions.resolve_sensor_def("raw_files_sensor")
    market_data = resources_for(Settings.from_env())["market_data"]  # the runs' own: they share the folder index
    context = dg.build_sensor_context(
        instance=instance, definitions=folder_definitions, resources={"market_data": market_data}
    )
    requests = sensor.evaluate_tick(context).run_requests or []
    assert len(requests) == 1  # 2026-01-01 (files with no bar in a partition) .. 2026-01-04: one run

    def counts() -> tuple[int, int, int]:
        [(accepted, quarantined, files)] = stored(
            "SELECT (SELECT count(*) FROM raw.market_bars), (SELECT count(*) FROM raw.quarantined_bars), "
            "(SELECT count(*) FROM raw.quarantined_files)"
        )
        return accepted, quarantined, files

    run_requests(folder_definitions, instance, requests)
    accepted, quarantined, files = counts()
    assert accepted + quarantined == rows_in and files == len(unreadable)
    assert accepted == 48 + 48 + 24 + 1 + 3  # the two CSV days, the Parquet day, DDD's good bar, EEE's three
    reasons = dict(stored("SELECT \"timestamp\", reason FROM raw.quarantined_bars WHERE symbol IN ('EEE', 'FFF')"))
    assert reasons["1900-01-01T00:00:00Z"] == "timestamp: before the first partition (2026-01-01)"
    assert (
        reasons[tomorrow]
        == reasons["2030-06-01T00:00:00Z"]
        == "timestamp: in the future beyond the allowed clock skew (300 s)"
    )
    resent = stored(
        "SELECT source_file, close FROM raw.market_bars "
        "WHERE symbol = 'AAA' AND \"timestamp\" < TIMESTAMPTZ '2026-01-02 02:00:00+00'"
    )
    assert resent == [(str(raw / "a_resend.csv"), 10.7)] * 2
    [(losers,)] = stored(f"SELECT count(*) FROM raw.quarantined_bars WHERE source_file = '{raw / '2026-01-02.csv'}'")
    assert losers == 6

    run_requests(folder_definitions, instance, requests)  # the same runs again
    for day in ("2026-01-01", "2026-01-03"):  # and single days
        run_requests(folder_definitions, instance, [dg.RunRequest(partition_key=day)])
    assert counts() == (accepted, quarantined, files)


def logged(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, text: str) -> list[str]:
    """The run's log messages (any level, events included) that contain ``text``."""
    return [e.user_message for e in instance.all_logs(result.run_id) if text in e.user_message]


def test_bars_before_market_start_give_one_message_saying_what_to_set(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    """A first run on a vendor's history from 2019 (1,008 hourly bars, 42 days) under the default
    MLOPS_MARKET_START=2026-01-01: one warning, and the bars' metadata, say when they start and what to set."""
    hours = pd.date_range("2019-01-02", periods=1008, freq="h", tz="UTC")
    write_csv(data_dir / "raw" / "history.csv", [f"AAA,{t:%Y-%m-%dT%H:%M:%SZ},10,11,9,10.5,100,tech" for t in hours])
    tolerant = {"ops": {"market_bars": {"config": {"max_quarantine_ratio": 1.0}}}}
    first = {"dagster/partition": "2026-01-01"}
    result = run_job(folder_definitions, instance, "ingestion_job", tags=first, run_config=tolerant)
    advice = (
        f"bars start 2019-01-02 ({data_dir / 'raw' / 'history.csv'}), the first partition is 2026-01-01: "
        "set MLOPS_MARKET_START=2019-01-02 to ingest them; until then the 1,008 bars before 2026-01-01 are "
        "quarantined under partition key __outside_partitions__, not ingested"
    )
    assert logged(instance, result, "MLOPS_MARKET_START") == [advice]  # once, not per bar
    [quarantine] = [m for m in result.get_asset_materialization_events() if m.asset_key.path[-1] == "quarantined_bars"]
    assert quarantine.materialization.metadata["before_first_partition"].value == advice
    assert stored("SELECT count(*) FROM raw.quarantined_bars") == [(1008,)]  # kept, never dropped


def test_a_file_of_daily_bars_is_refused_under_hourly_bars(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    """Daily bars open at midnight, on the hourly grid too: only their spacing says they are not hourly."""
    raw = data_dir / "raw"
    write_csv(raw / "daily.csv", [f"AAA,2026-01-{d:02d},10,11,9,10.5,100,tech" for d in range(1, 11)])
    write_csv(raw / "hourly.csv", [f"BBB,2026-01-02T{h:02d}:00:00Z,10,11,9,10.5,100,tech" for h in range(24)])
    result = run_job(folder_definitions, instance, "ingestion_job", tags=DAY)
    assert result.success
    assert stored("SELECT DISTINCT symbol FROM raw.market_bars") == [("BBB",)]
    [(path, reason)] = stored("SELECT path, reason FROM raw.quarantined_files")
    assert path == str(raw / "daily.csv")
    assert reason == (
        f"{raw / 'daily.csv'}: bars 1d apart (the commonest spacing of a symbol's consecutive bars in the file), but "
        "MLOPS_BAR_INTERVAL declares 1h bars: if the source delivers 1d bars, set MLOPS_BAR_INTERVAL=1d; if not, "
        "fix the file"
    )
    assert [Path(a["subject"]).name for a in alerts_of(data_dir, "file_quarantined")] == ["daily.csv"]
