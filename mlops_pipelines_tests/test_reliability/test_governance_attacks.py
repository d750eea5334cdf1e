"""Attacks on governance: bypassing the lifecycle through its own library, forging rows in its tables, tampering
with the model artifact and its MLflow tags, losing the registry, and one person wearing two hats."""

import hashlib
import json
import os
import stat
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_pipelines.lib.core.tracking import MODEL_FILE, ArtifactIntegrityError, Tracking
from mlops_pipelines.lib.governance import audit
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE, AuditKeyError, Entry
from mlops_pipelines.lib.governance.lifecycle import ApprovalRequired, InconsistentLifecycle, Lifecycle, State
from mlops_pipelines.lib.governance.model_loading import load_for_inference
from mlops_pipelines_tests.test_lib.governance.test_lifecycle import MODEL, governed, new_version, staged_version

GUARDED = {
    "register",
    "gate",
    "approve",
    "request_review",
    "decide_review",
    "promote_to_production",
    "rollback",
    "retire",
    "record_override",
    "record_traffic",  # a deployment's shadow / canary: a row that moves no state or alias
    "resync",
}


def load(lifecycle: Lifecycle, tracking: Tracking, ref: str) -> lgb.Booster:
    return load_for_inference(lifecycle, tracking, MODEL, ref, live_graph_hash="g1").booster


def forge(lifecycle: Lifecycle, values: dict[str, object], row_hash: str | None) -> None:
    """INSERT a row straight into the audit table, the way someone with write access to the warehouse would."""
    [(seq,)] = lifecycle.conn.execute(f"SELECT max(seq) + 1 FROM {AUDIT_TABLE}").fetchall()
    row = {
        "seq": seq,
        "operation_id": "forged",
        "occurred_at": pd.Timestamp.now(tz="UTC"),
        "actor": "mallory",
        "model": MODEL,
        "from_state": "STAGING",
        "to_state": "STAGING",
        "reason": "looks fine",
        "policy_hash": None,
        "policy_result": None,
        "approvals": "[]",
        "details": "{}",
        **values,
        "row_hash": row_hash,
    }
    columns = ", ".join(row)
    lifecycle.conn.execute(
        f"INSERT INTO {AUDIT_TABLE} ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )


def test_state_changes_only_through_the_guarded_operations() -> None:
    writers = {name for name in dir(Lifecycle) if not name.startswith("_") and callable(getattr(Lifecycle, name))} - {
        "version",
        "versions",
        "record",
        "records",
        "models",
        "state",
        "alias_version",
        "approvals",
        "review",
        "run_id",
        "newest",
        "champion",
        "challenger",
        "deployed",
    }
    readers = {
        "reviews",
        "history",
        "rows",
        "rollback_target",
        "consistency_problems",
        "require_consistent",
        "verify",
        "of_kind",
    }
    assert writers - readers == GUARDED  # no public method writes an arbitrary transition


def test_a_production_move_written_past_the_guards_is_caught_and_not_served(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db, approver=None)  # STAGING, no approval, no review
    with governed(tracking, db) as lifecycle:
        # the library's one writer, called directly: valid hashes, but no approval and no sign-off behind it
        lifecycle._write(
            MODEL,
            "mallory",
            [Entry(version, "transition", State.STAGING, State.PRODUCTION, "yolo")],
            {"production": version},
        )
        problems = lifecycle.consistency_problems(MODEL)
        assert any("PRODUCTION needs an approval" in p for p in problems), problems
        with pytest.raises(InconsistentLifecycle, match="PRODUCTION needs an approval"):
            load(lifecycle, tracking, "production")


@pytest.mark.parametrize("action", ["approval", "review_approved"])
def test_forged_approval_or_signoff_rows_are_detected_and_refused(
    tracking: Tracking, tmp_path: Path, action: str
) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db, approver=None)
    with governed(tracking, db) as lifecycle:
        lifecycle.request_review(MODEL, version, report_uri="r.html", actor="pipeline")
        if action == "approval":  # the genuine other half, so only the forged row is missing
            lifecycle.decide_review(MODEL, version, approve=True, reviewer="compliance", comment="ok")
        else:
            lifecycle.approve(MODEL, version, approver="alice", comment="ok")
        [(previous,)] = lifecycle.conn.execute(
            f"SELECT row_hash FROM {AUDIT_TABLE} ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        # the best an attacker without the key can do: chain it with plain sha256, as the old log did
        forged_hash = hashlib.sha256(json.dumps([previous, "forged"]).encode()).hexdigest()
        forge(lifecycle, {"version": version, "action": action, "actor": "mallory"}, forged_hash)
        # and the tables the old code read approvals and reviews from
        lifecycle.conn.execute(
            "CREATE TABLE IF NOT EXISTS governance.model_approvals AS SELECT 'toy_model' AS model, ? AS version, "
            "'mallory' AS approver, 'ok' AS comment, now() AS approved_at",
            [version],
        )
        problems = lifecycle.consistency_problems(MODEL)
        assert any("was changed, or a row before it removed" in p for p in problems), problems
        with pytest.raises(InconsistentLifecycle, match="failed verification"):
            lifecycle.promote_to_production(MODEL, version, actor="ops", reason="forged")
        assert lifecycle.state(MODEL, version) == State.STAGING
        assert [a["approver"] for a in lifecycle.approvals(MODEL, version)] == (
            [] if action == "approval" else ["alice"]
        )  # the forged row never counts


@pytest.mark.parametrize("how", ["null hash", "right content, wrong key"])
def test_rows_appended_without_a_valid_hash_are_detected(tracking: Tracking, tmp_path: Path, how: str) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        before = lifecycle.consistency_problems(MODEL)
        if how == "null hash":
            lifecycle.conn.execute(f"ALTER TABLE {AUDIT_TABLE} ALTER COLUMN row_hash DROP NOT NULL")
            forge(lifecycle, {"version": version, "action": "approval"}, None)
            expected = "has no hash"
        else:  # the chain computed exactly as the platform does, with a key that is not the platform's
            entry = Entry(version, "approval", State.STAGING, State.STAGING, "ok")
            audit.append(lifecycle.conn, os.urandom(32), model=MODEL, actor="mallory", entries=[entry], operation="x")
            expected = "was changed, or a row before it removed"
        after = lifecycle.consistency_problems(MODEL)
    assert before == [] and any(expected in p for p in after), after


def test_artifact_and_its_mlflow_tag_rewritten_together_are_refused(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = new_version(tracking, db)
    client = tracking.client()
    mv = client.get_model_version(MODEL, version)
    [model_file] = [p for p in Path(tracking.artifact_root).rglob(MODEL_FILE) if mv.source.split("/")[-1] in str(p)]
    # a different, valid model in place of the registered one, and its checksum in the MLflow tag
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    other = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x["b"] > 0).astype(int)), 3)
    other.save_model(str(model_file))
    client.set_model_version_tag(MODEL, version, "artifact_sha256", hashlib.sha256(model_file.read_bytes()).hexdigest())
    with governed(tracking, db) as lifecycle:
        assert any("artifact_sha256 differs" in p for p in lifecycle.consistency_problems(MODEL))
        with pytest.raises(InconsistentLifecycle, match="artifact_sha256"):
            load(lifecycle, tracking, version)
        # an operator puts the tag back from the log: the file itself is still refused, by the chain's checksum
        lifecycle.resync(MODEL, actor="ops", reason="incident 7: tag rewritten")
        assert lifecycle.consistency_problems(MODEL) == []
        with pytest.raises(ArtifactIntegrityError, match="recorded at registration"):
            load(lifecycle, tracking, version)


def test_a_malformed_model_file_is_refused_without_taking_the_process_down(tracking: Tracking, tmp_path: Path) -> None:
    """LightGBM aborts the process (SIGABRT) on some malformed files; a matching checksum does not make them safe."""
    good = tmp_path / "good.lgb"
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x["a"] > 0).astype(int)), 3).save_model(good)
    bad = tmp_path / "bad" / MODEL_FILE
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace("split_feature=", "split_feature=99 ", 1))
    sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(ArtifactIntegrityError, match="not a loadable LightGBM model .*signal"):
        tracking.load_verified_booster(str(bad.parent), sha)


def test_a_lost_registry_is_detected_not_silently_recreated(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    uri = f"sqlite:///{fresh / 'mlflow.db'}"  # the MLflow database deleted and re-created empty
    empty = Tracking(uri, uri, str(fresh / "artifacts"))
    with governed(empty, db) as lifecycle:
        assert lifecycle.models() == [MODEL]
        problems = lifecycle.consistency_problems(MODEL)
        assert f"v{version} is in the audit log but not in the MLflow registry (registry lost?)" in problems
        with pytest.raises(InconsistentLifecycle):
            load(lifecycle, empty, "staging")


def test_one_person_cannot_be_two_of_reviewer_approver_requester(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db, approver=None)
    with governed(tracking, db) as lifecycle:
        lifecycle.request_review(MODEL, version, report_uri="r.html", actor="pipeline")
        with pytest.raises(ApprovalRequired, match="trained this version"):
            lifecycle.approve(
                MODEL, version, approver="  TRAINER ", comment="case and spaces do not make another person"
            )
        lifecycle.approve(MODEL, version, approver="Alice", comment="ok")
        with pytest.raises(ApprovalRequired, match="approved this version and cannot also review it"):
            lifecycle.decide_review(MODEL, version, approve=True, reviewer="alice", comment="me again")
        lifecycle.decide_review(MODEL, version, approve=True, reviewer="Carol", comment="report read")
        with pytest.raises(ApprovalRequired, match="signed its compliance review"):
            lifecycle.approve(MODEL, version, approver="CAROL", comment="and now approving")
        with pytest.raises(ApprovalRequired, match="someone other than"):
            lifecycle.promote_to_production(MODEL, version, actor="ALICE", reason="approver promoting")
        with pytest.raises(ApprovalRequired, match="also signed the compliance review"):
            lifecycle.promote_to_production(MODEL, version, actor="carol", reason="reviewer promoting")
        lifecycle.promote_to_production(MODEL, version, actor="Bob", reason="a third person")
        assert lifecycle.state(MODEL, version) == State.PRODUCTION
        actors = [r["actor"] for r in lifecycle.history(MODEL)][-3:]
        assert actors == ["alice", "carol", "bob"]  # stored normalized
        assert lifecycle.consistency_problems(MODEL) == []


def test_audit_key_is_private_and_never_silently_replaced(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    new_version(tracking, db)
    key = db.parent / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.rename(tmp_path / "elsewhere.key")
    with pytest.raises(AuditKeyError, match="is missing but .* rows signed with it"), governed(tracking, db):
        pass
    assert not key.exists()  # no new key was made up for an existing log


def test_resync_refuses_a_log_that_fails_verification(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = new_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        lifecycle.conn.execute(f"UPDATE {AUDIT_TABLE} SET actor = 'mallory' WHERE seq = 1")
        tracking.client().set_model_version_tag(MODEL, version, "lifecycle_state", "PRODUCTION")
        with pytest.raises(InconsistentLifecycle, match="audit log itself"):
            lifecycle.resync(MODEL, actor="ops", reason="try")
