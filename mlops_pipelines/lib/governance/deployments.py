"""Deployments bind a model version to an environment, after a checklist that says why it may go there."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, ModelRecord, ReviewStatus, State
from mlops_pipelines.lib.monitoring.feature_drift import latest_severity
from mlops_pipelines.lib.monitoring.severity import Severity

DEPLOYMENTS_TABLE = "governance.deployments"  # owned here: its DDL and every read and write
_DEPLOYMENT_COLUMNS = """
    deployment_id VARCHAR PRIMARY KEY, model VARCHAR, version VARCHAR, environment VARCHAR, status VARCHAR,
    checklist VARCHAR, created_by VARCHAR, created_at TIMESTAMP WITH TIME ZONE
"""
ENVIRONMENT_STATES = {"production": {State.PRODUCTION}, "staging": {State.STAGING, State.PRODUCTION}}


@dataclass(frozen=True)
class ChecklistItem:
    name: str
    passed: bool
    detail: str


def checklist(lifecycle: Lifecycle, model: str, version: str, environment: str) -> list[ChecklistItem]:
    """Why ``version`` may (or may not) go to ``environment``, every item judged from the verified audit log."""
    allowed = ENVIRONMENT_STATES.get(environment)
    if allowed is None:
        raise ValueError(f"unknown environment {environment!r}; use one of {sorted(ENVIRONMENT_STATES)}")
    record, problems = lifecycle.verify(model)
    items = [
        ChecklistItem(
            "governance_consistent",
            not problems,
            "audit log verified, MLflow agrees with it" if not problems else "; ".join(problems),
        )
    ]
    found = record.versions.get(version)
    if found is None:
        return [*items, ChecklistItem("lifecycle_state", False, f"v{version} has no audit history")]
    items.append(
        ChecklistItem(
            "lifecycle_state",
            found.state in allowed,
            f"v{version} is {found.state}; {environment} needs {' or '.join(sorted(allowed))}",
        )
    )
    review = found.review or {}
    reviewed = review.get("status") == ReviewStatus.APPROVED
    detail = f"signed off by {review['reviewer']}" if reviewed else f"compliance review: {review.get('status', 'none')}"
    if environment == "production":
        items.append(ChecklistItem("compliance_review_approved", reviewed, detail))
    approvers = [
        a["approver"] for a in found.stay_approvals() if a["approver"] not in (found.trainer, review.get("reviewer"))
    ]
    items.append(
        ChecklistItem(
            "approvals_present",
            bool(approvers),
            f"approved by {', '.join(approvers)}" if approvers else "no four-eyes approval",
        )
    )
    results = [
        r["policy_result"]
        for r in lifecycle.history(model)
        if r["verified"] and r["version"] == version and r["policy_result"]
    ]
    passed = bool(results and results[-1].get("passed"))
    items.append(
        ChecklistItem(
            "policy_passed",
            passed,
            "latest policy evaluation passed" if passed else "no passing policy evaluation on record",
        )
    )
    items.append(_drift_item(lifecycle.conn, model, version))
    items.append(_rollback_item(record, version, found.state))
    return items


def _rollback_item(record: ModelRecord, version: str, state: str) -> ChecklistItem:
    """Known when there is a version to go back to, or when nothing of this model was ever in production."""
    production = record.aliases.get("production")
    target = record.superseded.get(version) if state == State.PRODUCTION else production
    if target is not None:
        return ChecklistItem("rollback_target_known", True, f"rollback target v{target}")
    if not any(v.was_production for v in record.versions.values() if v.version != version):
        return ChecklistItem("rollback_target_known", True, "first deployment of this model: nothing to roll back to")
    return ChecklistItem("rollback_target_known", False, "other versions were in production, none is restorable")


def _drift_item(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> ChecklistItem:
    """This version's latest judged hourly verdict (monitoring covers the deployed versions): NORMAL passes. A
    window that could not be judged (INSUFFICIENT, an hour with no data yet) never passes and never hides the
    verdict before it. Before any monitoring, its drift against its own training data was judged by the gate."""
    severity = latest_severity(conn, model, version)
    if severity is None:
        return ChecklistItem("drift_normal", True, f"v{version} not monitored yet; the gate judged its drift")
    if severity == Severity.INSUFFICIENT:
        detail = f"monitoring could not judge v{version}'s drift yet (INSUFFICIENT: too little data in its windows)"
        return ChecklistItem("drift_normal", False, detail)
    normal = severity == Severity.NORMAL
    return ChecklistItem("drift_normal", normal, f"latest judged drift severity of v{version}: {severity}")


def create_deployment(
    lifecycle: Lifecycle, model: str, version: str, environment: str, *, actor: str
) -> dict[str, Any]:
    """Record a deployment; its status is ``ready`` when every checklist item passed, else ``blocked``."""
    items = checklist(lifecycle, model, version, environment)
    record = {
        "deployment_id": uuid.uuid4().hex[:12],
        "model": model,
        "version": version,
        "environment": environment,
        "status": "ready" if all(i.passed for i in items) else "blocked",
        "checklist": json.dumps([i.__dict__ for i in items]),
        "created_by": actor,
        "created_at": datetime.now(UTC),
    }
    conn = lifecycle.conn
    conn.execute(f"CREATE TABLE IF NOT EXISTS {DEPLOYMENTS_TABLE} ({_DEPLOYMENT_COLUMNS})")
    conn.execute(f"INSERT INTO {DEPLOYMENTS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(record.values()))
    return record


def list_deployments(conn: duckdb.DuckDBPyConnection, model: str | None = None) -> list[dict[str, Any]]:
    """Every deployment (of ``model``), newest first."""
    return _rows(conn, "WHERE model = ?", [model]) if model else _rows(conn, "", [])


def deployment_record(conn: duckdb.DuckDBPyConnection, deployment_id: str) -> dict[str, Any] | None:
    """One deployment, or None."""
    rows = _rows(conn, "WHERE deployment_id = ?", [deployment_id])
    return rows[0] if rows else None


def _rows(conn: duckdb.DuckDBPyConnection, where: str, params: list[object]) -> list[dict[str, Any]]:
    if not warehouse.table_exists(conn, DEPLOYMENTS_TABLE):
        return []
    return warehouse.fetch_dicts(conn, f"SELECT * FROM {DEPLOYMENTS_TABLE} {where} ORDER BY created_at DESC", params)
