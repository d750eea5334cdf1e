"""Prediction drift and realized performance of deployed versions on a real instance, with auto-demotion."""

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_pipelines.catalog.policies import DRIFT_POLICY_PATH
from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines.lib.monitoring.drift_status import read_status
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_defs.conftest import run_job, settings_lifecycle
from mlops_pipelines_tests.test_defs.test_monitoring import evaluate_sensor, monitoring_resource

pytestmark = pytest.mark.slow
MODEL = "direction_classifier"
DAYS = {"dagster/asset_partition_range_start": "2026-01-01", "dagster/asset_partition_range_end": "2026-01-20"}


def to_production(lifecycle: Lifecycle, version: str) -> None:
    """Gate (a permissive policy if this tiny market failed the real one), four-eyes approval, compliance
    sign-off, promotion: the path an operator takes."""
    if lifecycle.state(MODEL, version) != "STAGING":
        permissive = PromotionPolicy.model_validate({"defaults": {"min_test_rows": 1}})
        result = evaluate(permissive, model=MODEL, strategy="directional", metrics={"test_rows": 10})
        lifecycle.gate(MODEL, version, result, actor="operator")
    lifecycle.approve(MODEL, version, approver="reviewer", comment="ok")
    lifecycle.request_review(MODEL, version, report_uri="report.html", actor="pipeline")
    lifecycle.decide_review(MODEL, version, approve=True, reviewer="compliance", comment="signed off")
    lifecycle.promote_to_production(MODEL, version, actor="operator", reason="test")


def policy_file(tmp_path: Path, *, auto_demote: bool) -> str:
    """The catalog policy with a threshold every realized AUC passes: CRITICAL on purpose."""
    raw = yaml.safe_load(DRIFT_POLICY_PATH.read_text())
    raw["performance"].update(auto_demote=auto_demote, min_labelled=1)
    raw["performance"]["metrics"]["auc"] = {"baseline": "val_auc", "compare": "drop", "warning": -2, "critical": -1}
    path = tmp_path / f"policy_{auto_demote}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def monitor(definitions: dg.Definitions, instance: dg.DagsterInstance, partition: str, policy: str | None = None):
    status_file = Settings.from_env().data_dir / "monitoring" / "drift_status.json"
    resources = {"monitoring": monitoring_resource(status_file, Path(policy))} if policy else None
    result = definitions.resolve_job_def("drift_job").execute_in_process(
        instance=instance, tags={"dagster/partition": partition}, resources=resources
    )
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_performance_and_prediction_drift_then_auto_demotion(
    definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path, tmp_path: Path
) -> None:
    run_job(definitions, instance, "ingestion_job", tags=DAYS)
    run_job(definitions, instance, "features_job")
    run_job(definitions, instance, "training_job")
    definitions.resolve_job_def("training_job").execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(MODEL)]
    )  # a second version of the classifier
    settings = Settings.from_env()
    with settings_lifecycle() as lifecycle:
        for version in ("1", "2"):
            to_production(lifecycle, version)
        assert lifecycle.alias_version(MODEL, "production") == "2"

    # the catalog policy: real numbers, persisted, in the metadata; no demotion (auto_demote is off by default)
    meta = monitor(definitions, instance, "2026-01-18-23:00")
    perf = meta["monitoring/model_performance"]
    assert perf[f"{MODEL}_status"].value in ("OK", "WARNING", "CRITICAL")
    assert 0.3 < perf[f"{MODEL}_auc"].value < 0.8
    assert "| auc " in perf["performance"].value
    pred = meta["monitoring/prediction_drift"]
    assert pred[f"{MODEL}_severity"].value in ("NORMAL", "MODERATE", "SEVERE")
    assert "data:image/png;base64," in pred["histograms"].value
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        rows = conn.execute(
            "SELECT metric, n_labelled, window_end FROM monitoring.model_performance WHERE model = ? ORDER BY 1",
            [MODEL],
        ).fetchall()
        [(n_current,)] = conn.execute(
            "SELECT n_current FROM monitoring.prediction_drift_reports WHERE model = ?", [MODEL]
        ).fetchall()
    assert [r[0] for r in rows] == ["auc", "hit_rate"] and rows[0][1] > 500
    assert n_current == 8 * 24  # 8 symbols x the 24 decisions of the day
    status = read_status(data_dir / "monitoring" / "drift_status.json")[MODEL]
    assert set(status) == {"feature_drift", "prediction_drift", "performance"}

    # a CRITICAL drop with auto-demotion off: an alert, the sensor retrains, production stays
    meta = monitor(definitions, instance, "2026-01-18-23:00", policy_file(tmp_path, auto_demote=False))
    assert meta["monitoring/model_performance"][f"{MODEL}_status"].value == "CRITICAL"
    [request] = evaluate_sensor(instance, data_dir / "monitoring" / "drift_status.json", None).run_requests or []
    assert request.tags["retrain_model"] == MODEL and "performance" in request.tags["trigger"]
    with settings_lifecycle() as lifecycle:
        assert lifecycle.alias_version(MODEL, "production") == "2"

    # auto-demotion on: PRODUCTION goes back to v1 through the lifecycle, audited, and the alert says so
    monitor(definitions, instance, "2026-01-19-23:00", policy_file(tmp_path, auto_demote=True))
    with settings_lifecycle() as lifecycle:
        conn = lifecycle.conn
        assert lifecycle.alias_version(MODEL, "production") == "1"
        assert lifecycle.state(MODEL, "2") == "STAGING"
        assert lifecycle.consistency_problems(MODEL) == []
        [(actor, reason)] = conn.execute(
            f"SELECT actor, reason FROM {AUDIT_TABLE} WHERE model = ? AND action = 'rollback' AND version = '2'",
            [MODEL],
        ).fetchall()
    assert actor == "monitoring/model_performance" and "auto-demotion" in reason
    alerts = [json.loads(line) for line in (data_dir / "alerts" / "alerts.jsonl").read_text().splitlines()]
    critical = [a for a in alerts if a["kind"] == "critical_performance"]
    assert len(critical) == 2 and "rolled back to v1" in critical[1]["summary"]
