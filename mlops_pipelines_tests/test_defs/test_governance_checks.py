"""The scheduled governance check: every model's record verified hourly by a Dagster job, failing on tampering."""

from pathlib import Path

import dagster as dg

from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_defs.conftest import run_job, settings_tracking
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import new_version


def test_hourly_check_job_fails_on_a_tampered_audit_log(
    definitions: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    schedule = definitions.resolve_schedule_def("governance_check_schedule")
    assert schedule.cron_schedule == "35 * * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    # a version of a catalog model, registered through the lifecycle in the stores the definitions use
    settings = Settings.from_env()
    tracking, key = settings_tracking(), settings.audit_key_file
    new_version(tracking, settings.warehouse_path, model="direction_classifier", key_file=key)

    def checks() -> dict[str, dg.AssetCheckEvaluation]:
        result = run_job(definitions, instance, "governance_check_job")
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    assert checks()["direction_classifier_lifecycle_consistent"].passed
    with open_lifecycle(tracking.client(), settings.warehouse_path, key) as lifecycle:
        lifecycle.conn.execute(f"UPDATE {AUDIT_TABLE} SET actor = 'mallory' WHERE seq = 2")
    failed = checks()["direction_classifier_lifecycle_consistent"]
    assert not failed.passed
    assert "audit row 2 was changed" in str(failed.metadata["problems"].value)
    assert checks()["volatility_forecaster_lifecycle_consistent"].passed  # nothing of it to verify
