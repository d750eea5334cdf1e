"""What monitoring watches comes from the lifecycle's answer (the audit log), not from MLflow's aliases; auto-
demotion is the lifecycle's rollback. On a real MLflow registry and a real DuckDB audit log."""

from pathlib import Path

import pytest

from mlops_pipelines.catalog.models import DIRECTION_CLASSIFIER
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.monitored_versions import MONITORING_ACTOR, auto_demotion, deployed_versions
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import (
    MODEL,
    champion_and_challenger,
    governed,
    new_version,
)

SPEC = DIRECTION_CLASSIFIER.model_copy(update={"name": MODEL})


def test_the_deployed_version_is_the_audit_logs_even_when_an_mlflow_alias_was_moved_by_hand(
    tracking: Tracking, tmp_path: Path
) -> None:
    db = tmp_path / "w.duckdb"
    first, second = champion_and_challenger(tracking, db)
    with governed(tracking, db) as lifecycle:
        [deployed] = deployed_versions(lifecycle, [SPEC])
        assert (deployed.name, deployed.version, deployed.alias) == (MODEL, first, "production")
        assert deployed.run_id == lifecycle.version(MODEL, first).run_id
        # the attack: someone points MLflow's production alias at the challenger, past the lifecycle
        lifecycle.client.set_registered_model_alias(MODEL, "production", second)
        [deployed] = deployed_versions(lifecycle, [SPEC])
        assert (deployed.version, deployed.alias) == (first, "production")


def test_a_model_neither_in_production_nor_staged_is_not_monitored(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    new_version(tracking, db)  # TRAINED only
    with governed(tracking, db) as lifecycle:
        assert deployed_versions(lifecycle, [SPEC]) == []
        lifecycle.client.set_registered_model_alias(MODEL, "staging", "1")  # an alias the log never gave
        assert deployed_versions(lifecycle, [SPEC]) == []


def test_auto_demotion_is_an_audited_rollback_and_refused_without_a_target(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    first, second = champion_and_challenger(tracking, db)
    with governed(tracking, db) as lifecycle:
        [champion] = deployed_versions(lifecycle, [SPEC])
        demote = auto_demotion(lifecycle)
        with pytest.raises(MlopsError, match="no previous production version"):
            demote(champion, reason="auto-demotion: test")  # v1 superseded nothing
        lifecycle.promote_to_production(MODEL, second, actor="ops", reason="v2")
        [champion] = deployed_versions(lifecycle, [SPEC])
        assert demote(champion, reason="auto-demotion: test") == first
        assert lifecycle.deployed(MODEL) == (first, "production")
        [(actor, reason)] = lifecycle.conn.execute(
            f"SELECT actor, reason FROM {AUDIT_TABLE} WHERE action = 'rollback' AND version = ?", [second]
        ).fetchall()
        assert (actor, reason) == (MONITORING_ACTOR, "auto-demotion: test")
        assert lifecycle.consistency_problems(MODEL) == []
