"""The demo's summary reads the warehouse through the tables' owning modules: quarantine reasons and the
monitoring timeline, on a real DuckDB file."""

from datetime import timedelta
from pathlib import Path

import pytest

from mlops_pipelines.cli.demo import print_monitoring
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.ingestion.market_bars import QUARANTINE_TABLE, quarantine_reasons
from mlops_pipelines.lib.monitoring import feature_drift, model_performance, prediction_drift
from mlops_pipelines.lib.monitoring.drift_report import PREDICTION
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_lib.monitoring.test_health import END, drift_report, partition, performance_report


def test_quarantine_reasons_are_counted_per_reason(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        assert quarantine_reasons(conn) == []  # nothing ever quarantined
        conn.execute(f"CREATE TABLE {QUARANTINE_TABLE} (reason VARCHAR)")
        reasons = ["missing close; high < low", "missing close", "duplicate [kept a.csv line 3]", "duplicate [x]"]
        conn.executemany(f"INSERT INTO {QUARANTINE_TABLE} VALUES (?)", [[r] for r in reasons])
        assert quarantine_reasons(conn) == [("duplicate", 2), ("missing close", 2), ("high < low", 1)]
        assert quarantine_reasons(conn, limit=1) == [("duplicate", 2)]


def test_the_monitoring_timeline_prints_the_three_hourly_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    monkeypatch.setenv("MLOPS_WAREHOUSE_PATH", str(path))
    calm, shifted = END - timedelta(days=1), END
    with warehouse.connect(path) as conn:  # written through the tables' owners, as the monitoring assets do
        for end, severity in ((calm, Severity.NORMAL), (shifted, Severity.SEVERE)):
            feature_drift.write_report(conn, drift_report("m", severity, end), partition(end))
        prediction_drift.write_report(
            conn, drift_report("m", Severity.MODERATE, shifted, column=PREDICTION), partition(shifted)
        )
        for end, status in ((calm, PerformanceStatus.OK), (shifted, PerformanceStatus.CRITICAL)):
            model_performance.write_report(conn, performance_report("m", status, end, 0.5), partition(end))
    print_monitoring(Settings.from_env(), ["run-1"])
    out = capsys.readouterr().out
    assert "m v1: one drift run per day (UTC)" in out and "retraining runs requested by retraining_sensor: 1" in out
    [severe] = [line for line in out.splitlines() if partition(shifted) in line]
    assert "SEVERE" in severe and "MODERATE" in severe and "CRITICAL" in severe
    [calm_line] = [line for line in out.splitlines() if partition(calm) in line]
    assert "NORMAL" in calm_line and "OK" in calm_line
