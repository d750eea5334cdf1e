"""The lifecycle state machine on a real MLflow registry and a real DuckDB audit log."""

import itertools
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.audit import AUDIT_TABLE
from mlops_pipelines.lib.governance.lifecycle import (
    ALLOWED,
    STATE_TAG,
    ApprovalRequired,
    IllegalTransition,
    Lifecycle,
    LifecycleError,
    State,
    check_transition,
    open_lifecycle,
)
from mlops_pipelines.lib.governance.promotion_policy import PromotionPolicy, evaluate
from mlops_pipelines_tests.conftest import finished, wait_until

MODEL = "toy_model"


def errors(tmp_path: Path) -> Callable[[], str]:
    return lambda: "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("*.err")))


PASSING = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 0.0}})
FAILING = PromotionPolicy.model_validate({"defaults": {"min_sharpe": 99.0}})


@pytest.mark.parametrize(("source", "target"), list(itertools.product(State, State)))
def test_every_pair_of_states(source: State, target: State) -> None:
    if (source, target) in ALLOWED:
        check_transition(MODEL, "1", source, target)
    else:
        with pytest.raises(IllegalTransition, match=f"{source.value} -> {target.value} is not allowed"):
            check_transition(MODEL, "1", source, target)


@contextmanager
def governed(tracking: Tracking, db: Path, key_file: Path | None = None) -> Iterator[Lifecycle]:
    """The lifecycle over ``db``, its audit key next to it unless given (as the platform opens it)."""
    with open_lifecycle(tracking.client(), db, key_file or db.parent / "audit.key") as lifecycle:
        yield lifecycle


def new_version(
    tracking: Tracking, db: Path, trainer: str = "trainer", *, model: str = MODEL, key_file: Path | None = None
) -> str:
    """A real (tiny) LightGBM model, logged and registered as TRAINED."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, (x["a"] > 0).astype(int)), 5)
    with tracking.run(model, run_name="toy", tags={"trained_by": trainer}) as run:
        tracking.client().log_metric(run.info.run_id, "sharpe", 1.0)
        logged = tracking.log_booster(run.info.run_id, booster, x.head(3))
    with governed(tracking, db, key_file) as lifecycle:
        mv = lifecycle.register(
            model,
            source=logged.model_uri,
            run_id=run.info.run_id,
            model_id=logged.model_id,
            tags={"trained_by": trainer, "artifact_sha256": logged.artifact_sha256, "feature_graph_hash": "g1"},
            actor=trainer,
            reason="test",
        )
    return str(mv.version)


def staged_version(tracking: Tracking, db: Path, approver: str | None = "reviewer") -> str:
    version = new_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        result = evaluate(PASSING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, result, actor="pipeline") == State.STAGING
        if approver:
            lifecycle.approve(MODEL, version, approver=approver, comment="ok")
            lifecycle.request_review(MODEL, version, report_uri="report.html", actor="pipeline")
            lifecycle.decide_review(MODEL, version, approve=True, reviewer="compliance", comment="signed off")
    return version


def test_register_gate_and_four_eyes(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = new_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        assert lifecycle.state(MODEL, version) == State.TRAINED
        rejected = evaluate(FAILING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, rejected, actor="pipeline") == State.TRAINED
        with pytest.raises(LifecycleError, match="only STAGING versions are approved"):
            lifecycle.approve(MODEL, version, approver="reviewer", comment="too early")
        passed = evaluate(PASSING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, passed, actor="pipeline") == State.STAGING
        assert lifecycle.alias_version(MODEL, "staging") == version

        with pytest.raises(ApprovalRequired, match="trained this version"):
            lifecycle.approve(MODEL, version, approver="trainer", comment="self-approval")
        with pytest.raises(ApprovalRequired, match="needs an approval"):
            lifecycle.promote_to_production(MODEL, version, actor="ops", reason="no approval yet")
        lifecycle.approve(MODEL, version, approver="reviewer", comment="reviewed")
        with pytest.raises(ApprovalRequired, match="APPROVED compliance review"):
            lifecycle.promote_to_production(MODEL, version, actor="ops", reason="no sign-off yet")
        lifecycle.request_review(MODEL, version, report_uri="r.html", actor="pipeline")
        with pytest.raises(ApprovalRequired, match="cannot review"):
            lifecycle.decide_review(MODEL, version, approve=True, reviewer="trainer", comment="self")
        lifecycle.decide_review(MODEL, version, approve=False, reviewer="compliance", comment="missing data")
        with pytest.raises(ApprovalRequired, match=r"compliance review \(REJECTED\)"):
            lifecycle.promote_to_production(MODEL, version, actor="ops", reason="rejected")
        lifecycle.request_review(MODEL, version, report_uri="r2.html", actor="pipeline")
        lifecycle.decide_review(MODEL, version, approve=True, reviewer="compliance", comment="fixed")
        with pytest.raises(ApprovalRequired, match="requester"):  # the approver cannot also be the requester
            lifecycle.promote_to_production(MODEL, version, actor="reviewer", reason="self-request")
        with pytest.raises(IllegalTransition, match="STAGING -> RETIRED"):
            lifecycle.retire(MODEL, version, actor="ops", reason="not allowed from STAGING")
        assert lifecycle.promote_to_production(MODEL, version, actor="ops", reason="go") is None
        assert lifecycle.state(MODEL, version) == State.PRODUCTION
        assert lifecycle.alias_version(MODEL, "production") == version
        assert lifecycle.alias_version(MODEL, "staging") is None
        actions = [(r["action"], r["from_state"], r["to_state"]) for r in lifecycle.history(MODEL)]
        assert actions == [
            ("register", None, "DRAFT"),
            ("transition", "DRAFT", "TRAINED"),
            ("gate_rejected", "TRAINED", "TRAINED"),
            ("transition", "TRAINED", "VALIDATED"),
            ("transition", "VALIDATED", "STAGING"),
            ("approval", "STAGING", "STAGING"),
            ("review_requested", "STAGING", "STAGING"),
            ("review_rejected", "STAGING", "STAGING"),
            ("review_requested", "STAGING", "STAGING"),
            ("review_approved", "STAGING", "STAGING"),
            ("transition", "STAGING", "PRODUCTION"),
        ]
        assert lifecycle.history(MODEL)[2]["policy_hash"] == FAILING.digest()
        assert lifecycle.consistency_problems(MODEL) == []


def test_failed_revalidation_sends_staging_back_to_trained(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db, approver=None)
    with governed(tracking, db) as lifecycle:
        failed = evaluate(FAILING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, failed, actor="pipeline") == State.TRAINED
        assert lifecycle.alias_version(MODEL, "staging") is None
        assert lifecycle.consistency_problems(MODEL) == []


def test_a_gate_under_overrides_needs_a_reason_and_the_audit_keeps_them(tracking: Tracking, tmp_path: Path) -> None:
    """The library path: a verdict under request overrides without a reason writes nothing; with one, every row
    carries the overrides, the reason and the effective thresholds, under a hash that differs from the file's."""
    db = tmp_path / "w.duckdb"
    version = new_version(tracking, db)
    relaxed = evaluate(FAILING, model=MODEL, strategy="s", metrics={"sharpe": 1.0}, request={"min_sharpe": 0.5})
    assert relaxed.passed and relaxed.policy_hash != FAILING.digest()
    with governed(tracking, db) as lifecycle:
        with pytest.raises(LifecycleError, match="need a reason"):
            lifecycle.gate(MODEL, version, relaxed, actor="ops", reason="  ")
        assert lifecycle.state(MODEL, version) == State.TRAINED
        assert lifecycle.gate(MODEL, version, relaxed, actor="ops", reason="one-off: thin market") == State.STAGING
        rows = [r for r in lifecycle.history(MODEL) if r["policy_hash"]]
    assert [r["to_state"] for r in rows] == [State.VALIDATED, State.STAGING]
    for row in rows:
        assert row["policy_hash"] == relaxed.policy_hash and row["verified"]
        assert row["details"]["overrides"] == {"min_sharpe": 0.5}
        assert row["details"]["override_reason"] == "one-off: thin market"
        assert row["details"]["thresholds"] == relaxed.thresholds
        assert row["policy_result"]["thresholds"]["min_sharpe"] == 0.5 and "one-off: thin market" in row["reason"]


def test_an_approval_does_not_carry_over_a_new_stay_in_staging(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = staged_version(tracking, db)  # approved by "reviewer", compliance signed off
    with governed(tracking, db) as lifecycle:
        failed = evaluate(FAILING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, failed, actor="pipeline") == State.TRAINED
        passed = evaluate(PASSING, model=MODEL, strategy="s", metrics={"sharpe": 1.0})
        assert lifecycle.gate(MODEL, version, passed, actor="pipeline") == State.STAGING
        assert [a["approver"] for a in lifecycle.approvals(MODEL, version)] == ["reviewer"]  # history kept
        assert lifecycle.approvals(MODEL, version, current_stay=True) == []
        with pytest.raises(ApprovalRequired, match="since it last entered STAGING.*approvals of this stay: \\[\\]"):
            lifecycle.promote_to_production(MODEL, version, actor="ops", reason="test")
        lifecycle.approve(MODEL, version, approver="reviewer", comment="re-checked")
        lifecycle.promote_to_production(MODEL, version, actor="ops", reason="test")
        assert lifecycle.state(MODEL, version) == State.PRODUCTION


def champion_and_challenger(tracking: Tracking, db: Path) -> tuple[str, str]:
    """A version in production and a newer one staged and approved."""
    first = staged_version(tracking, db)
    with governed(tracking, db) as lifecycle:
        lifecycle.promote_to_production(MODEL, first, actor="ops", reason="v1")
    return first, staged_version(tracking, db)


def test_an_mlflow_failure_mid_operation_leaves_mlflow_and_the_audit_log_as_they_were(
    tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "w.duckdb"
    first, second = champion_and_challenger(tracking, db)
    with governed(tracking, db) as lifecycle:

        def recorded() -> tuple[dict[str, str], int]:
            states = {str(mv.version): mv.tags[STATE_TAG] for mv in lifecycle.versions(MODEL)}
            return states, len(lifecycle.history(MODEL))

        before = recorded()
        real = lifecycle.client.set_registered_model_alias

        def flaky(name: str, alias: str, version: str) -> None:
            if alias == "production" and version == second:
                raise MlflowException("registry unavailable")
            real(name, alias, version)

        monkeypatch.setattr(lifecycle.client, "set_registered_model_alias", flaky)
        with pytest.raises(MlflowException, match="registry unavailable"):
            lifecycle.promote_to_production(MODEL, second, actor="ops", reason="v2")
        assert recorded() == before  # both tags moved back, no audit row for the failed operation
        assert lifecycle.alias_version(MODEL, "production") == first
        assert lifecycle.consistency_problems(MODEL) == []


def test_new_production_moves_old_out_and_rollback_restores_it(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    first, second = champion_and_challenger(tracking, db)
    with governed(tracking, db) as lifecycle:
        assert lifecycle.alias_version(MODEL, "challenger") == second  # it challenges the champion
        assert lifecycle.promote_to_production(MODEL, second, actor="ops", reason="v2") == first
        states = {str(mv.version): mv.tags["lifecycle_state"] for mv in lifecycle.versions(MODEL)}
        assert states == {first: "STAGING", second: "PRODUCTION"}
        assert lifecycle.rollback_target(MODEL) == first

        assert lifecycle.rollback(MODEL, actor="ops", reason="bad fills") == first
        states = {str(mv.version): mv.tags["lifecycle_state"] for mv in lifecycle.versions(MODEL)}
        assert states == {first: "PRODUCTION", second: "STAGING"}
        assert lifecycle.alias_version(MODEL, "production") == first
        assert lifecycle.consistency_problems(MODEL) == []

        lifecycle.retire(MODEL, first, actor="ops", reason="end of life")
        assert lifecycle.state(MODEL, first) == State.RETIRED
        assert lifecycle.alias_version(MODEL, "production") is None
        with pytest.raises(LifecycleError, match="no production version"):
            lifecycle.rollback(MODEL, actor="ops", reason="nothing left")
        # retired keeps every artifact: the model still loads and verifies
        mv = lifecycle.version(MODEL, first)
        assert tracking.load_verified_booster(mv.source, mv.tags["artifact_sha256"]).num_trees() == 5
        assert lifecycle.consistency_problems(MODEL) == []


def test_edited_or_deleted_audit_rows_are_detected(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    champion_and_challenger(tracking, db)
    copy = tmp_path / "copy.duckdb"

    def problems_after(sql: str) -> list[str]:
        shutil.copy(db, copy)
        with governed(tracking, copy) as lifecycle:
            lifecycle.conn.execute(sql)
            return lifecycle.consistency_problems(MODEL)

    with governed(tracking, db) as lifecycle:
        assert lifecycle.consistency_problems(MODEL) == []
        [(last,)] = lifecycle.conn.execute(f"SELECT max(seq) FROM {AUDIT_TABLE}").fetchall()
    assert problems_after(f"UPDATE {AUDIT_TABLE} SET actor = 'someone else' WHERE seq = 3") == [
        "audit row 3 was changed, or a row before it removed"
    ]
    assert problems_after(f"DELETE FROM {AUDIT_TABLE} WHERE seq = {last}") == [
        f"audit row {last}, the newest of {MODEL} per MLflow, is missing or changed"
    ]
    middle = problems_after(f"DELETE FROM {AUDIT_TABLE} WHERE seq = 2")
    assert "audit log sequence has gaps" in middle and "audit row 3 was changed, or a row before it removed" in middle


def test_consistency_check_detects_disagreement(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    version = new_version(tracking, db)
    tracking.client().set_model_version_tag(MODEL, version, "lifecycle_state", "PRODUCTION")  # behind our back
    with governed(tracking, db) as lifecycle:
        problems = lifecycle.consistency_problems(MODEL)
    assert problems == [f"v{version}: MLflow says PRODUCTION, audit log says TRAINED"]


PROMOTE = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path
    from mlops_pipelines.lib.governance.lifecycle import open_lifecycle
    from mlops_pipelines.lib.core.tracking import Tracking
    uri, db, version, go = sys.argv[1:5]
    client = Tracking(uri, uri, "unused").client()
    Path(f"{go}.{version}.ready").touch()  # everything loaded: the race is between the promotions alone
    while not Path(go).exists():
        time.sleep(0.005)
    with open_lifecycle(client, db, Path(db).parent / "audit.key") as lifecycle:
        lifecycle.promote_to_production("toy_model", version, actor="ops-" + version, reason="race")
""")


@pytest.mark.slow
def test_concurrent_promotions_leave_one_production_and_no_gap(tracking: Tracking, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    versions = [staged_version(tracking, db) for _ in range(2)]
    go = tmp_path / "go"
    procs = []
    for v in versions:
        with (tmp_path / f"promote_{v}.err").open("w") as err:
            args = [sys.executable, "-c", PROMOTE, tracking.tracking_uri, str(db), v, str(go)]
            procs.append(subprocess.Popen(args, stderr=err))
    for v, proc in zip(versions, procs, strict=True):
        wait_until(f"v{v} ready", Path(f"{go}.{v}.ready").exists, watch=[proc], log=errors(tmp_path))
    go.touch()  # release both at once
    for proc in procs:
        wait_until("the promotion ends", finished(proc))
        assert proc.returncode == 0, errors(tmp_path)()
    with governed(tracking, db) as lifecycle:
        states = sorted(str(mv.tags["lifecycle_state"]) for mv in lifecycle.versions(MODEL))
        assert states == ["PRODUCTION", "STAGING"]
        assert lifecycle.consistency_problems(MODEL) == []  # includes: audit seq has no gaps
        production = lifecycle.alias_version(MODEL, "production")
        other = next(v for v in versions if v != production)
        # the later promotion superseded the earlier one, in one operation
        assert lifecycle.rollback_target(MODEL) == other
