"""The demo's summary reads the warehouse through the tables' owning modules: quarantine reasons and the
monitoring timeline, on a real DuckDB file."""

from pathlib import Path

import pytest

from mlops_pipelines.cli.demo import print_monitoring
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.ingestion.validation import QUARANTINE_TABLE, top_quarantine_reasons
from mlops_pipelines.lib.monitoring.drift_report import severity_timeline
from mlops_pipelines.settings import Settings


def test_quarantine_reasons_are_counted_per_reason(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        assert top_quarantine_reasons(conn) == []  # nothing ever quarantined
        conn.execute(f"CREATE TABLE {QUARANTINE_TABLE} (reason VARCHAR)")
        reasons = ["missing close; high < low", "missing close", "duplicate [kept a.csv line 3]", "duplicate [x]"]
        conn.executemany(f"INSERT INTO {QUARANTINE_TABLE} VALUES (?)", [[r] for r in reasons])
        assert top_quarantine_reasons(conn) == [("duplicate", 2), ("missing close", 2), ("high < low", 1)]
        assert top_quarantine_reasons(conn, top=1) == [("duplicate", 2)]


def test_the_monitoring_timeline_joins_the_three_hourly_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(path))
    with warehouse.connect(path) as conn:
        assert severity_timeline(conn) == []
        conn.execute("CREATE SCHEMA IF NOT EXISTS monitoring")
        conn.execute(
            "CREATE TABLE monitoring.model_drift_reports AS SELECT * FROM (VALUES "
            "('m', '1', '2026-02-19-23:00', 'NORMAL', 'ret_1h'), ('m', '1', '2026-02-19-23:00', 'NORMAL', 'rsi_14'),"
            "('m', '1', '2026-02-20-23:00', 'SEVERE', 'ret_1h')) t(model, version, partition_key, model_severity, f)"
        )
        assert [r["prediction_drift"] for r in severity_timeline(conn)] == [None, None]  # not run yet
        conn.execute(
            "CREATE TABLE monitoring.prediction_drift_reports AS SELECT * FROM (VALUES "
            "('m', '2026-02-20-23:00', 'MODERATE')) t(model, partition_key, model_severity)"
        )
        conn.execute(
            "CREATE TABLE monitoring.model_performance AS SELECT * FROM (VALUES "
            "('m', '2026-02-19-23:00', 'OK'), ('m', '2026-02-20-23:00', 'CRITICAL')) "
            "t(model, partition_key, model_status)"
        )
        rows = severity_timeline(conn)
    assert [(r["hour"], r["feature_drift"], r["prediction_drift"], r["performance"]) for r in rows] == [
        ("2026-02-19-23:00", "NORMAL", None, "OK"),
        ("2026-02-20-23:00", "SEVERE", "MODERATE", "CRITICAL"),
    ]
    print_monitoring(Settings.from_env(), ["run-1"])
    out = capsys.readouterr().out
    assert "m v1: one drift run per day (UTC)" in out and "retraining runs requested by retraining_sensor: 1" in out
    [severe] = [line for line in out.splitlines() if "2026-02-20-23:00" in line]
    assert "SEVERE" in severe and "MODERATE" in severe and "CRITICAL" in severe
