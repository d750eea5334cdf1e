"""The governance outputs as Dagster assets: the audit pack and the daily platform KPIs, on a real instance after
a real promotion (the lifecycle helpers' versions, in the stores the definitions use)."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.governance.kpis import read_kpis
from mlops_pipelines.settings import Settings
from mlops_pipelines_tests.test_defs.conftest import settings_tracking
from mlops_pipelines_tests.test_lib.governance.test_audit_pack import assert_self_contained
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import champion_and_challenger


@pytest.fixture
def promoted(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The definitions, after a version was promoted to production and a second one staged and approved."""
    monkeypatch.setenv("MLOPS_AUDIT_KEY_FILE", str(data_dir / "audit.key"))  # next to the warehouse, as the helpers
    monkeypatch.setenv("MLOPS_SYNTHETIC_SYMBOLS", "8")
    settings = Settings.from_env()
    champion_and_challenger(settings_tracking(), settings.warehouse_path)
    from mlops_pipelines.definitions import defs

    return defs()


def test_the_audit_pack_asset_writes_a_verified_self_contained_pack(
    promoted: dg.Definitions, instance: dg.DagsterInstance, data_dir: Path
) -> None:
    result = promoted.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["governance", "audit_pack"])],
        run_config={"ops": {"governance__audit_pack": {"config": {"since": "2026-01-01", "until": ""}}}},
    )
    [materialization] = result.asset_materializations_for_node("governance__audit_pack")
    metadata = materialization.metadata
    assert metadata["audit_log_verification"].value == "OK"
    assert metadata["versions_promoted_or_retired"].value == 2
    index = Path(str(metadata["index"].value))
    assert index.is_relative_to(data_dir / "governance" / "audit_packs")
    assert_self_contained(index.parent)


def test_the_kpis_asset_writes_the_day_and_plots_floats(promoted: dg.Definitions, instance: dg.DagsterInstance) -> None:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    result = promoted.resolve_job_def("governance_kpis_job").execute_in_process(instance=instance, partition_key=today)
    [materialization] = result.asset_materializations_for_node("governance__kpis")
    metadata = materialization.metadata
    # two versions, both staged (released) and signed off; the toy runs log no manifest, card, SHAP or backtest
    assert metadata["lifecycle.versions"].value == 2.0 and metadata["evaluation.releases"].value == 2.0
    assert metadata["lifecycle.review_share"].value == 1.0 and metadata["lifecycle.manifest_share"].value == 0.0
    assert isinstance(metadata["governance.approval_turnaround_hours_median"], dg.FloatMetadataValue)
    assert metadata["adoption.returns.models"].value == 2.0  # both catalog models read returns
    assert "| lifecycle.card_share | 0 | 0 of 2 versions |" in str(metadata["kpis"].value)
    with warehouse.connect(Settings.from_env().warehouse_path, read_only=True) as conn:
        stored = {r["kpi"]: r["value"] for r in read_kpis(conn) if r["partition_key"] == today}
    assert stored["lifecycle.versions"] == 2.0

    schedule = promoted.resolve_schedule_def("governance_kpis_schedule")
    context = dg.build_schedule_context(
        repository_def=promoted.get_repository_def(),
        scheduled_execution_time=datetime(2026, 3, 2, 0, 30, tzinfo=UTC),
    )
    [request] = list(schedule.evaluate_tick(context).run_requests or [])
    assert request.partition_key == "2026-03-01"  # the day that just ended
    # the training job gates models; it never builds the governance documents (a daily-partitioned asset)
    training = promoted.resolve_job_def("training_job")
    assert not {"governance__kpis", "governance__audit_pack"} & set(training.graph.node_dict)
