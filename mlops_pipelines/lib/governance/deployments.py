"""Deployments bind a model version to an environment, after a checklist that says why it may go there.

A ready production deployment also carries the traffic its serving processes share with the ``challenger``
(``Traffic``): ``shadow`` (the challenger scores every request off the response path, logged with role
``shadow``) and ``canary_share`` (that share of symbols answered by the challenger, role ``canary``). The traffic
configuration is written only by ``set_traffic``, as rows of the governance audit log (``Lifecycle.record_traffic``:
HMAC-chained, actor, old and new values, reason), and read back from the verified log: the table below holds no
traffic column that a direct write could change unseen. Serving follows the production deployment that
``active_deployment`` names: the newest ready production deployment of the version holding ``production``.
"""

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, LifecycleError, ModelRecord, ReviewStatus, State
from mlops_pipelines.lib.monitoring.feature_drift import latest_severity
from mlops_pipelines.lib.monitoring.severity import Severity

DEPLOYMENTS_TABLE = "governance.deployments"  # owned here: its DDL and every read and write
_DEPLOYMENT_COLUMNS = """
    deployment_id VARCHAR PRIMARY KEY, model VARCHAR, version VARCHAR, environment VARCHAR, status VARCHAR,
    checklist VARCHAR, created_by VARCHAR, created_at TIMESTAMP WITH TIME ZONE
"""
DEPLOYMENT_TAG = "production_deployment"  # registered-model tag: the newest ready production deployment's id
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
    """Record a deployment; its status is ``ready`` when every checklist item passed, else ``blocked``. A ready
    production deployment is also marked on the registered model (``DEPLOYMENT_TAG``), so serving processes,
    which watch the registry and not the warehouse, follow the new deployment's traffic (off until set)."""
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
    if record["status"] == "ready" and environment == "production":
        lifecycle.client.set_registered_model_tag(model, DEPLOYMENT_TAG, record["deployment_id"])
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


# ---- traffic: shadow and canary ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    """What a production deployment shares with the challenger: ``shadow`` (the challenger also scores every
    request, off the response path) and ``canary_share`` (the share of symbols, 0 to 1, that the challenger
    answers, chosen by ``to_canary``). The default is neither."""

    shadow: bool = False
    canary_share: float = 0.0

    @property
    def active(self) -> bool:
        return self.shadow or self.canary_share > 0

    def as_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "canary_share": self.canary_share}


def check_share(value: object) -> float:
    """``value`` as a canary share: a number from 0 to 1 (a ValueError naming the field otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"canary_share must be a number from 0 to 1, got {value!r}")
    return float(value)


def traffic_of(record: ModelRecord, deployment_id: str) -> Traffic:
    """The deployment's traffic as the verified audit log says it (off when never set)."""
    found = record.traffic.get(deployment_id)
    if not found:
        return Traffic()
    return Traffic(shadow=bool(found.get("shadow")), canary_share=float(found.get("canary_share") or 0.0))


def active_deployment(conn: duckdb.DuckDBPyConnection, record: ModelRecord) -> dict[str, Any] | None:
    """The production deployment serving follows: the newest ``ready`` production deployment of the version that
    holds the ``production`` alias (None when that version was never deployed)."""
    production = record.aliases.get("production")
    if production is None:
        return None
    rows = _rows(
        conn,
        "WHERE model = ? AND version = ? AND environment = 'production' AND status = 'ready'",
        [record.model, production],
    )
    return rows[0] if rows else None


def serving_traffic(conn: duckdb.DuckDBPyConnection, record: ModelRecord) -> tuple[str | None, Traffic]:
    """The active production deployment's id and traffic (None and off when there is none)."""
    found = active_deployment(conn, record)
    return (None, Traffic()) if found is None else (found["deployment_id"], traffic_of(record, found["deployment_id"]))


def set_traffic(
    lifecycle: Lifecycle,
    deployment_id: str,
    *,
    shadow: bool | None = None,
    canary_share: float | None = None,
    actor: str,
    reason: str,
) -> tuple[Traffic, Traffic]:
    """Change a ready production deployment's traffic (what is not given stays), written as one audit row (actor,
    old and new values, reason). The one way for the API and the CLI. Returns (old, new)."""
    found = deployment_record(lifecycle.conn, deployment_id)
    if found is None:
        raise NotFound(f"no deployment {deployment_id!r}; `mlops deployments list` shows the recorded ones")
    if found["environment"] != "production" or found["status"] != "ready":
        raise LifecycleError(
            f"deployment {deployment_id} is a {found['status']} {found['environment']} deployment: traffic is "
            "configured on ready production deployments"
        )
    if shadow is not None and not isinstance(shadow, bool):
        raise ValueError(f"shadow must be true or false, got {shadow!r}")
    old = traffic_of(lifecycle.record(found["model"]), deployment_id)
    new = Traffic(
        shadow=old.shadow if shadow is None else shadow,
        canary_share=old.canary_share if canary_share is None else check_share(canary_share),
    )
    lifecycle.record_traffic(
        found["model"],
        found["version"],
        deployment_id=deployment_id,
        old=old.as_dict(),
        new=new.as_dict(),
        actor=actor,
        reason=reason,
    )
    return old, new


def canary_bucket(model: str, symbol: str) -> float:
    """A number in [0, 1) fixed by (model, symbol): the first 8 bytes of their SHA-256, so every process, on every
    restart, puts a symbol in the same place (Python's ``hash`` of a string changes with each process)."""
    digest = hashlib.sha256(f"{model}\x00{symbol}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def to_canary(model: str, symbol: str, share: float) -> bool:
    """Whether the challenger answers ``symbol`` at canary ``share``: sticky (same symbol, same answer) and
    monotone (raising the share only moves symbols from the champion to the challenger)."""
    return share > 0 and canary_bucket(model, symbol) < share


def with_traffic(lifecycle: Lifecycle, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (deployments) with their traffic from the verified audit log, and whether serving follows them
    (``active``: the active production deployment of its model)."""
    records: dict[str, ModelRecord] = {}
    active: dict[str, str | None] = {}
    found = []
    for row in rows:
        model = row["model"]
        if model not in records:
            records[model] = lifecycle.record(model)
            current = active_deployment(lifecycle.conn, records[model])
            active[model] = None if current is None else current["deployment_id"]
        traffic = traffic_of(records[model], row["deployment_id"])
        found.append({**row, "traffic": traffic.as_dict(), "active": active[model] == row["deployment_id"]})
    return found
