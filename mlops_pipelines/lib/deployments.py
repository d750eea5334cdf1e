"""Deployments bind a model version to an environment, after a checklist that says why it may go there."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from mlops_pipelines.lib import warehouse
from mlops_pipelines.lib.lifecycle import AUDIT_TABLE, Lifecycle, State
from mlops_pipelines.lib.promotion import monitored_severity

DEPLOYMENTS_TABLE = "governance.deployments"
ENVIRONMENT_STATES = {"production": {State.PRODUCTION}, "staging": {State.STAGING, State.PRODUCTION}}


@dataclass(frozen=True)
class ChecklistItem:
    name: str
    passed: bool
    detail: str


def checklist(lifecycle: Lifecycle, model: str, version: str, environment: str) -> list[ChecklistItem]:
    conn = lifecycle.conn
    mv = lifecycle.version(model, version)
    state = mv.tags.get("lifecycle_state", "")
    allowed = ENVIRONMENT_STATES.get(environment)
    if allowed is None:
        raise ValueError(f"unknown environment {environment!r}; use one of {sorted(ENVIRONMENT_STATES)}")
    items = [
        ChecklistItem(
            "lifecycle_state",
            state in allowed,
            f"v{version} is {state}; {environment} needs {' or '.join(sorted(allowed))}",
        )
    ]
    trainer = mv.tags.get("trained_by")
    approvers = [
        a["approver"] for a in lifecycle.approvals(model, version, current_stay=True) if a["approver"] != trainer
    ]
    items.append(
        ChecklistItem(
            "approvals_present",
            bool(approvers),
            f"approved by {', '.join(approvers)}" if approvers else "no four-eyes approval",
        )
    )
    gate = conn.execute(
        f"SELECT policy_result FROM {AUDIT_TABLE} WHERE model = ? AND version = ? AND policy_result IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1",
        [model, version],
    ).fetchone()
    passed = bool(gate and json.loads(gate[0])["passed"])
    items.append(
        ChecklistItem(
            "policy_passed",
            passed,
            "latest policy evaluation passed" if passed else "no passing policy evaluation on record",
        )
    )
    items.append(_drift_item(conn, model, version))
    items.append(_rollback_item(lifecycle, model, version, state))
    return items


def _rollback_item(lifecycle: Lifecycle, model: str, version: str, state: str) -> ChecklistItem:
    """Known when there is a version to go back to, or when nothing of this model was ever in production."""
    if state == State.PRODUCTION:
        target = lifecycle.rollback_target(model)
    else:
        target = lifecycle.alias_version(model, "production")
    if target is not None:
        return ChecklistItem("rollback_target_known", True, f"rollback target v{target}")
    row = lifecycle.conn.execute(
        f"SELECT count(*) FROM {AUDIT_TABLE} WHERE model = ? AND to_state = 'PRODUCTION' AND version <> ?",
        [model, version],
    ).fetchone()
    if row is None or row[0] == 0:
        return ChecklistItem("rollback_target_known", True, "first deployment of this model: nothing to roll back to")
    return ChecklistItem("rollback_target_known", False, "other versions were in production, none is restorable")


def _drift_item(conn: duckdb.DuckDBPyConnection, model: str, version: str) -> ChecklistItem:
    """This version's latest hourly monitoring (monitoring covers the deployed versions); before that, its drift
    against its own training data was judged by the policy gate."""
    severity = monitored_severity(conn, model, version)
    if severity is None:
        return ChecklistItem("drift_normal", True, f"v{version} not monitored yet; the gate judged its drift")
    return ChecklistItem("drift_normal", severity == "NORMAL", f"latest drift severity of v{version}: {severity}")


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
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {DEPLOYMENTS_TABLE} (deployment_id VARCHAR PRIMARY KEY, model VARCHAR,
            version VARCHAR, environment VARCHAR, status VARCHAR, checklist VARCHAR, created_by VARCHAR,
            created_at TIMESTAMP WITH TIME ZONE)"""
    )
    conn.execute(f"INSERT INTO {DEPLOYMENTS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(record.values()))
    return record


def list_deployments(conn: duckdb.DuckDBPyConnection, model: str | None = None) -> list[dict[str, Any]]:
    if not warehouse.table_exists(conn, DEPLOYMENTS_TABLE):
        return []
    where, params = ("WHERE model = ?", [model]) if model else ("", [])
    cursor = conn.execute(f"SELECT * FROM {DEPLOYMENTS_TABLE} {where} ORDER BY created_at DESC", params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
