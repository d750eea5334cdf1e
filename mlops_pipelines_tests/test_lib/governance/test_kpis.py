"""The governance KPIs against values computed by hand on a constructed audit history, and the placebo."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.config_files import PolicyError
from mlops_pipelines.lib.governance.audit import Row
from mlops_pipelines.lib.governance.kpis import (
    Kpi,
    KpiContext,
    KpiPolicy,
    VersionFacts,
    ViewFacts,
    compute_kpis,
    kpi_markdown,
    load_kpi_policy,
    read_kpis,
    write_kpis,
)

DAY = datetime(2026, 3, 2, tzinfo=UTC)
POLICY = KpiPolicy.model_validate({"retraining": {"default_max_days": 7, "models": {"b": 3}}})
PASSED, FAILED = {"passed": True}, {"passed": False}


def at(day: int, hour: float = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC) + timedelta(hours=hour)


class History:
    """Audit rows built by hand (verified, as the chain would say), seq in order."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, when: datetime, model: str, version: str, action: str, src: str | None, dst: str | None,
            *, actor: str = "pipeline", op: str | None = None, policy: dict | None = None,
            details: dict[str, Any] | None = None) -> None:  # fmt: skip
        seq = len(self.rows) + 1
        self.rows.append(
            Row(
                seq=seq, operation_id=op or f"op{seq}", occurred_at=when, actor=actor, model=model, version=version,
                action=action, from_state=src, to_state=dst, reason="", policy_hash="h" if policy else None,
                policy_result=policy, approvals=[], details=details or {}, row_hash="x", verified=True,
            )
        )  # fmt: skip

    def register(self, when: datetime, model: str, version: str) -> None:
        details = {"trained_by": "trainer", "run_id": f"run-{model}{version}"}
        self.add(when, model, version, "register", None, "DRAFT", op=f"reg{model}{version}", details=details)
        self.add(when, model, version, "transition", "DRAFT", "TRAINED", op=f"reg{model}{version}")

    def gate_pass(self, when: datetime, model: str, version: str, details: dict | None = None) -> None:
        op = f"gate{model}{version}"
        self.add(when, model, version, "transition", "TRAINED", "VALIDATED", op=op, policy=PASSED, details=details)
        self.add(when, model, version, "transition", "VALIDATED", "STAGING", op=op, policy=PASSED, details=details)


def history() -> History:
    h = History()
    # a v1: staged 03-01 01:00, approved 4 h later, review requested 02:00 and signed 6 h later, promoted 03-02
    h.register(at(1), "a", "1")
    h.gate_pass(at(1, 1), "a", "1")
    h.add(at(1, 2), "a", "1", "review_requested", "STAGING", "STAGING")
    h.add(at(1, 5), "a", "1", "approval", "STAGING", "STAGING", actor="ann")
    h.add(at(1, 8), "a", "1", "review_approved", "STAGING", "STAGING", actor="rev")
    h.add(at(2, 10), "a", "1", "transition", "STAGING", "PRODUCTION", actor="ops")
    # a v2: registered on the day, refused by the gate on the day
    h.register(at(2, 12), "a", "2")
    h.add(at(2, 13), "a", "2", "gate_rejected", "TRAINED", "TRAINED", policy=FAILED)
    # b v1: 02-20, staged under request overrides, approved 2 h later, review still pending
    h.register(at(20, 0, month=2), "b", "1")
    h.gate_pass(at(20, 1, month=2), "b", "1", details={"overrides": {"min_sharpe": 0.1}})
    h.add(at(20, 2, month=2), "b", "1", "review_requested", "STAGING", "STAGING")
    h.add(at(20, 3, month=2), "b", "1", "approval", "STAGING", "STAGING", actor="ann")
    # an audited override on the day (serving despite a feature-graph mismatch)
    h.add(at(2, 15), "a", "1", "override", "PRODUCTION", "PRODUCTION", actor="ops")
    h.rows.sort(key=lambda r: r.occurred_at)
    return h


FACTS = {
    ("a", "1"): VersionFacts("a", "1", has_manifest=True, has_card=True, has_explanations=True, has_backtest=True),
    ("a", "2"): VersionFacts("a", "2", has_manifest=True, has_card=False, has_explanations=False, has_backtest=False),
    ("b", "1"): VersionFacts("b", "1", has_manifest=True, has_card=True, has_explanations=False, has_backtest=True),
}
VIEWS = [
    ViewFacts("returns", ("a", "b"), first_commit=at(1, month=1), first_materialized=at(3, month=1)),
    ViewFacts("volatility", ("a",), first_commit=at(1, 12, month=1), first_materialized=at(2, month=1)),
    ViewFacts("unused", (), first_commit=None, first_materialized=None),
]


def kpis_of(rows: list[Row], day: datetime = DAY, **kwargs: Any) -> dict[str, Kpi]:
    found = compute_kpis(
        rows=rows,
        versions=kwargs.pop("versions", FACTS),
        views=kwargs.pop("views", VIEWS),
        models=["a", "b", "c"],
        policy=POLICY,
        day_start=day,
        day_end=day + timedelta(days=1),
        **kwargs,
    )
    return {k.name: k for k in found}


def values(kpis: dict[str, Kpi]) -> dict[str, float | None]:
    return {name: k.value for name, k in kpis.items()}


def test_each_kpi_matches_its_hand_computed_value() -> None:
    got = values(kpis_of(history().rows))
    expected = {
        # adoption: returns read by a and b, volatility by a; first commit -> first materialization 2 d and 0.5 d
        "adoption.returns.models": 2.0,
        "adoption.volatility.models": 1.0,
        "adoption.unused.models": 0.0,
        "adoption.views_in_use_share": 2 / 3,
        "adoption.returns.days_to_first_materialization": 2.0,
        "adoption.volatility.days_to_first_materialization": 0.5,
        "adoption.unused.days_to_first_materialization": None,
        "adoption.median_days_to_first_materialization": 1.25,
        # lifecycle: 3 versions, all with manifests, 2 with cards; released a1, b1: only a1 signed off
        "lifecycle.versions": 3.0,
        "lifecycle.manifest_share": 1.0,
        "lifecycle.card_share": 2 / 3,
        "lifecycle.review_share": 0.5,
        "lifecycle.complete_share": 0.5,
        # a's newest version is 0.5 d old (limit 7), b's 11 d (limit 3); c has no version: not judged
        "lifecycle.cadence_kept_share": 0.5,
        "lifecycle.max_days_since_retraining": 11.0,
        # evaluation: releases a1 (SHAP + backtest), b1 (backtest only)
        "evaluation.releases": 2.0,
        "evaluation.explainability_share": 0.5,
        "evaluation.backtest_share": 1.0,
        # governance: approvals 4 h and 2 h after entering STAGING; a1's review decided 6 h after its request
        "governance.approval_turnaround_hours_median": 3.0,
        "governance.review_turnaround_hours_median": 6.0,
        "governance.policy_violations_day": 1.0,
        "governance.policy_violations_total": 1.0,
        "governance.overrides_day": 1.0,
        "governance.overrides_total": 2.0,  # b1's gate under overrides (two rows, one verdict) + the override
        "governance.audit_rows_failing_verification": 0.0,
    }
    assert got == pytest.approx(expected)


def test_kpis_are_as_of_the_end_of_their_day() -> None:
    got = values(kpis_of(history().rows, day=at(25, month=2)))
    assert got["lifecycle.versions"] == 1.0 and got["evaluation.releases"] == 1.0  # only b1 existed
    assert got["governance.overrides_total"] == 1.0 and got["governance.overrides_day"] == 0.0
    assert got["lifecycle.cadence_kept_share"] == 0.0  # b1 is 6 days old on 02-26 00:00, over its 3-day limit
    assert got["governance.review_turnaround_hours_median"] is None


def test_a_forged_row_is_counted_and_never_counts() -> None:
    rows = history().rows
    forged = replace(rows[-1], seq=99, action="approval", actor="mallory", verified=False, occurred_at=at(2, 20))
    got = values(kpis_of([*rows, forged]))
    assert got["governance.audit_rows_failing_verification"] == 1.0
    assert got["governance.approval_turnaround_hours_median"] == 3.0
    assert got["governance.overrides_day"] == 1.0


def test_placebo_without_versions_every_share_is_na() -> None:
    kpis = kpis_of([], versions={}, views=[])
    got = values(kpis)
    for name in (
        "adoption.views_in_use_share",
        "adoption.median_days_to_first_materialization",
        "lifecycle.manifest_share",
        "lifecycle.card_share",
        "lifecycle.review_share",
        "lifecycle.complete_share",
        "lifecycle.cadence_kept_share",
        "lifecycle.max_days_since_retraining",
        "evaluation.explainability_share",
        "evaluation.backtest_share",
        "governance.approval_turnaround_hours_median",
        "governance.review_turnaround_hours_median",
    ):
        assert got[name] is None and kpis[name].detail.startswith("n/a"), name
    assert got["lifecycle.versions"] == 0.0 and got["governance.policy_violations_total"] == 0.0
    assert "| lifecycle.card_share | n/a | n/a: no versions |" in kpi_markdown(list(kpis.values()), "KPIs")


def test_providers_add_kpis_and_the_table_keeps_na_as_null(tmp_path: Path) -> None:
    def prompt_turnaround(context: KpiContext) -> list[Kpi]:  # the hook the prompt library fills
        return [Kpi("governance.prompt_approval_turnaround_hours_median", "governance quality", None, "n/a")]

    kpis = list(kpis_of(history().rows, providers=[prompt_turnaround]).values())
    assert kpis[-1].name == "governance.prompt_approval_turnaround_hours_median"
    with warehouse.connect(tmp_path / "w.duckdb") as conn:
        write_kpis(conn, "2026-03-02", kpis, DAY)
        write_kpis(conn, "2026-03-02", kpis, DAY)  # a re-run replaces the day
        stored = read_kpis(conn)
    assert len(stored) == len(kpis)
    by_name = {r["kpi"]: r["value"] for r in stored}
    assert by_name["lifecycle.card_share"] == pytest.approx(2 / 3)
    assert by_name["governance.prompt_approval_turnaround_hours_median"] is None


def test_the_kpi_policy_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "kpis.yaml"
    path.write_text("retraining:\n  models:\n    a: -1\n")
    with pytest.raises(PolicyError, match=str(path)):
        load_kpi_policy(path)
    path.write_text("retraining:\n  default_max_days: 7\n  models:\n    a: null\n")
    policy = load_kpi_policy(path)
    assert policy.retraining.limit("a") is None and policy.retraining.limit("b") == 7
