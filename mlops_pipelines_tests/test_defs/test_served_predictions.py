"""The hourly copy of the serving API's prediction log into the warehouse: exactly once, whatever is re-run."""

import os
from pathlib import Path

import dagster as dg

from mlops_pipelines.defs.monitoring.assets import served_predictions
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.monitoring.served_predictions import SERVED_TABLE, PredictionLogWriter, Served
from mlops_pipelines.resources import MonitoringResource, WarehouseResource


def entry(request_id: str, item: int, symbol: str | None) -> Served:
    return Served(
        request_id, item, "m", "1", "production", "serve", symbol, None, 0.5, 1.2, "2026-02-14T12:00:00+00:00"
    )


def test_each_answered_prediction_lands_once(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    writer = PredictionLogWriter(log_dir)
    writer.append([entry("a", 0, "SYM1"), entry("a", 1, "SYM2")])
    writer.append([entry("b", 0, None)])
    writer.close()
    with open(writer.path, "ab") as torn:  # a line a killed server was writing: never read
        torn.write(b'{"request_id":"c","item":0,"model":"m"')
    resources = {
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"), audit_key_file=str(tmp_path / "k")),
        "monitoring": MonitoringResource(
            status_file="s",
            reference_profiles_dir="r",
            evidently_dir="e",
            policy_path="p",
            prediction_log_dir=str(log_dir),
        ),
    }
    first = dg.materialize([served_predictions], resources=resources)
    os.utime(writer.path, (0, 0))  # an hour old, its writer (this process) still alive: kept
    second = dg.materialize([served_predictions], resources=resources)
    inserted = [
        event.materialization.metadata["rows_inserted"].value
        for result in (first, second)
        for event in result.get_asset_materialization_events()
    ]
    assert inserted == [3, 0]
    with warehouse.connect(tmp_path / "w.duckdb", read_only=True) as conn:
        rows = conn.execute(f"SELECT request_id, item, symbol FROM {SERVED_TABLE} ORDER BY 1, 2").fetchall()
    assert rows == [("a", 0, "SYM1"), ("a", 1, "SYM2"), ("b", 0, None)]
    assert writer.path.exists()
