"""The monitoring tables through their owners (explicit columns, one write and read path each), model health at
a glance and the timeline, on a real DuckDB file."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.monitoring import drift, feature_drift, model_performance, prediction_drift
from mlops_pipelines.lib.monitoring.concept_drift import PerformanceReport
from mlops_pipelines.lib.monitoring.drift_report import PREDICTION, DriftReport
from mlops_pipelines.lib.monitoring.drift_status import read_status, update_status
from mlops_pipelines.lib.monitoring.health import latest_health, monitoring_timeline
from mlops_pipelines.lib.monitoring.severity import PerformanceStatus, Severity

END = datetime(2026, 2, 24, tzinfo=UTC)


def drift_report(model: str, severity: Severity, end: datetime, column: str = "ret_1") -> DriftReport:
    """A real report of one column (statistics from ``drift.compare``), with the given verdict."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({column: rng.normal(size=400)})
    current = pd.DataFrame({column: rng.normal(size=100)})
    profile = drift.ReferenceProfile.of(reference, [column])
    stats = drift.compare(profile, current).assign(severity=severity)
    start = end - timedelta(days=1)
    return DriftReport(model, "1", start, end, start - timedelta(days=30), start, stats, severity, profile, current)


def performance_report(model: str, status: PerformanceStatus, end: datetime, auc: float) -> PerformanceReport:
    table = pd.DataFrame(
        [
            {"metric": "auc", "realized": auc, "baseline": 0.56, "compare": "drop", "degradation": 0.56 - auc},
            {"metric": "hit_rate", "realized": 0.51, "baseline": 0.52, "compare": "drop", "degradation": 0.01},
        ]
    ).assign(status=status)
    return PerformanceReport(model, "1", end - timedelta(hours=72), end, 800, table, status)


def partition(end: datetime) -> str:
    return f"{end - timedelta(hours=1):%Y-%m-%d-%H:00}"


@pytest.fixture
def conn(tmp_path: Path):
    with warehouse.connect(tmp_path / "w.duckdb") as connection:
        yield connection


def test_each_table_has_its_declared_columns_which_are_those_older_warehouses_inferred(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    """The owners create their tables from their DDL; warehouses created before (the table inferred from the
    first report's frame) have the same columns and types, so reads and writes keep working on them."""
    reports = [
        (feature_drift, drift_report("m", Severity.SEVERE, END)),
        (prediction_drift, drift_report("m", Severity.NORMAL, END, column=PREDICTION)),
        (model_performance, performance_report("m", PerformanceStatus.OK, END, 0.55)),
    ]
    for owner, report in reports:
        owner.write_report(conn, report, partition(END))  # type: ignore[attr-defined]
        declared = conn.execute(f"DESCRIBE {owner.TABLE}").fetchall()
        conn.register("_frame", report.rows(partition(END)))
        conn.execute("CREATE TEMP TABLE _inferred AS SELECT * FROM _frame WHERE false")
        inferred = {name: kind for name, kind, *_ in conn.execute("DESCRIBE _inferred").fetchall()}
        conn.execute("DROP TABLE _inferred")
        conn.unregister("_frame")
        assert {name: kind for name, kind, *_ in declared} == inferred, owner.TABLE


def test_a_rerun_of_a_partition_replaces_its_rows(conn: duckdb.DuckDBPyConnection) -> None:
    feature_drift.write_report(conn, drift_report("m", Severity.SEVERE, END), partition(END))
    feature_drift.write_report(conn, drift_report("m", Severity.NORMAL, END), partition(END))
    assert feature_drift.verdicts(conn)["severity"].tolist() == ["NORMAL"]
    assert feature_drift.latest_severity(conn, "m", "1") == Severity.NORMAL
    assert feature_drift.latest_severity(conn, "m", "2") is None


def test_latest_health_is_the_latest_window_of_each_signal_not_the_latest_written(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    earlier = END - timedelta(days=3)
    for end, severity in ((END, Severity.MODERATE), (earlier, Severity.SEVERE)):  # the old hour backfilled last
        feature_drift.write_report(conn, drift_report("clf", severity, end), partition(end))
    prediction_drift.write_report(conn, drift_report("clf", Severity.NORMAL, END, column=PREDICTION), partition(END))
    model_performance.write_report(
        conn, performance_report("clf", PerformanceStatus.CRITICAL, END, 0.48), partition(END)
    )
    feature_drift.write_report(conn, drift_report("vol", Severity.NORMAL, earlier), partition(earlier))

    clf, vol = latest_health(conn)
    assert (clf.model, clf.version, clf.window_end) == ("clf", "1", END)
    assert (clf.feature_drift, clf.prediction_drift, clf.performance) == (
        Severity.MODERATE,
        Severity.NORMAL,
        PerformanceStatus.CRITICAL,
    )
    assert clf.metrics == {"auc": 0.48, "hit_rate": 0.51} and clf.n_labelled == 800
    assert clf.prediction_psi is not None and clf.prediction_psi >= 0
    assert (vol.model, vol.feature_drift, vol.prediction_drift, vol.performance) == ("vol", Severity.NORMAL, None, None)
    assert vol.metrics == {} and vol.window_end == earlier

    timeline = monitoring_timeline(conn)
    assert timeline.values.tolist() == [
        ["clf", "1", partition(earlier), "SEVERE", None, None],
        ["clf", "1", partition(END), "MODERATE", "NORMAL", "CRITICAL"],
        ["vol", "1", partition(earlier), "NORMAL", None, None],
    ]


def test_nothing_monitored_yet(conn: duckdb.DuckDBPyConnection) -> None:
    assert latest_health(conn) == []
    assert monitoring_timeline(conn).empty


def test_severity_codes_are_the_plotted_scale() -> None:
    assert [s.code for s in Severity] == [0, 1, 2, -1]  # INSUFFICIENT: not judged, plotted below NORMAL
    assert [s.code for s in PerformanceStatus] == [0, 1, 2, -1]
    assert [Severity.of_code(c) for c in (0, 1, 2, -1)] == list(Severity)
    assert Severity.SEVERE == "SEVERE" and f"{PerformanceStatus.CRITICAL}" == "CRITICAL"  # stored as text


def test_an_insufficient_window_never_replaces_a_verdict(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """A window that could not be judged says nothing: the latest judged verdict stands in the table's answer
    and in the status file the retraining sensor reads; a later real verdict does replace it (placebo)."""
    later = END + timedelta(hours=1)
    feature_drift.write_report(conn, drift_report("m", Severity.SEVERE, END), partition(END))
    feature_drift.write_report(conn, drift_report("m", Severity.INSUFFICIENT, later), partition(later))
    assert feature_drift.latest_severity(conn, "m", "1") == Severity.SEVERE
    feature_drift.write_report(conn, drift_report("n", Severity.INSUFFICIENT, END), partition(END))
    assert feature_drift.latest_severity(conn, "n", "1") == Severity.INSUFFICIENT  # never judged: not NORMAL

    status = tmp_path / "drift_status.json"

    def entry(severity: str, end: datetime) -> dict[str, str]:
        return {"version": "1", "severity": severity, "window_end": end.isoformat()}

    assert update_status(status, "m", "feature_drift", entry("SEVERE", END))
    assert not update_status(status, "m", "feature_drift", entry("INSUFFICIENT", later))
    assert read_status(status)["m"]["feature_drift"]["severity"] == "SEVERE"
    assert update_status(status, "m", "feature_drift", entry("NORMAL", later))
    assert read_status(status)["m"]["feature_drift"]["severity"] == "NORMAL"
