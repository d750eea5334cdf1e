"""Ingestion and features materialized on a real Dagster instance, DuckDB file and SQLite online store."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.catalog.feature_views import load_catalog
from mlops_pipelines.lib import warehouse
from mlops_pipelines.lib.online_store import OnlineStoreReader
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
    assert returns["dagster/table_name"].value == "features.returns__v2"
    assert [c.name for c in returns["dagster/column_schema"].value.columns][:4] == [
        "symbol",
        "event_ts",
        "created_ts",
        "ret_1h",
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
        created = dict(conn.execute("SELECT hour(event_ts), created_ts FROM features.returns__v2").fetchall())
    assert revised is not None and revised[0] == 10.8 and revised[1] >= before  # served from its arrival only
    assert kept == [(10.5, datetime(2026, 1, 2, 6, tzinfo=UTC), "revised")]  # the old version: nothing lost
    # every value computed from the corrected bar (its own, the next bars' 1h and 4h returns) waits for it;
    # the values before it and those that do not read it keep their bar's arrival time
    late = sorted(hour for hour, ts in created.items() if ts >= before)
    assert late == [6, 7, 10]  # the 05:00 bar has event time 06:00; ret_1h at 07:00 and ret_4h at 10:00 read it


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


def test_folder_file_missing_a_column_fails_naming_it(
    folder_definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    write_csv(
        data_dir / "raw" / "broken.csv",
        ["AAA,2026-01-02T00:00:00Z,10,11,9,100"],
        header="symbol,timestamp,open,high,low,volume",
    )
    result = run_job(
        folder_definitions, instance, "ingestion_job", tags={"dagster/partition": "2026-01-02"}, raise_on_error=False
    )
    assert not result.success
    message = failure_messages(result)
    assert "broken.csv" in message and "missing required column 'close'" in message
