"""What an operator is shown about a model version: ``mlops models show MODEL --version V``, ``mlops models history``
and the API's ``GET /api/v1/ml/lifecycle/models/{model}/{version}`` all answer from here, so the CLI and the API
cannot disagree. Every value is JSON-ready; times are ISO 8601 UTC (``lib/core/times.py``).
"""

import json
from datetime import datetime
from typing import Any

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.times import utc_time
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance import deployments
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.training.datasets import dataset_by_hash


def require_model(lifecycle: Lifecycle, name: str) -> None:
    """``NotFound`` naming the model and the known ones, unless the audit log or MLflow knows ``name``."""
    known = lifecycle.models()
    if name not in known:
        raise NotFound(f"no model {name!r}; known models: {', '.join(known) or 'none yet'}")


def require_version(lifecycle: Lifecycle, name: str, version: str) -> None:
    """``NotFound`` naming the model, the version and the model's versions, unless one of them has ``version``."""
    require_model(lifecycle, name)
    versions = set(lifecycle.record(name).versions) | {str(mv.version) for mv in lifecycle.versions(name)}
    if version not in versions:
        listed = ", ".join(sorted(versions, key=lambda v: (len(v), v))) or "none"
        raise NotFound(f"{name} has no version {version!r}; its versions: {listed}")


def history_rows(lifecycle: Lifecycle, model: str, version: str | None = None) -> list[dict[str, Any]]:
    """The model's audit log (only ``version``'s rows when given), oldest first: who did what, when, from which
    state to which, why, under which policy, and whether the row verifies (``True``, else the problem)."""
    return [
        {
            "seq": row["seq"],
            "at": utc_time(row["occurred_at"]),
            "actor": row["actor"],
            "version": row["version"],
            "action": row["action"],
            "from": row["from_state"],
            "to": row["to_state"],
            "reason": row["reason"],
            "policy_hash": row["policy_hash"],
            "verified": True if row["verified"] else str(row["problem"]),
        }
        for row in lifecycle.history(model)
        if version is None or row["version"] == version
    ]


def version_aliases(lifecycle: Lifecycle, model: str) -> dict[str, str]:
    """version -> its MLflow aliases, comma-separated."""
    out: dict[str, list[str]] = {}
    for alias in ("production", "staging", "challenger"):
        version = lifecycle.alias_version(model, alias)
        if version is not None:
            out.setdefault(version, []).append(alias)
    return {version: ",".join(aliases) for version, aliases in out.items()}


def version_detail(lifecycle: Lifecycle, tracking: Tracking, model: str, version: str) -> dict[str, Any]:
    """One version whole: state, aliases, tags, the training manifest, lineage (dataset, feature views, run, git
    commit), metrics, its lifecycle history from the audit log, approvals, the compliance review, its deployments
    and the model's governance problems. ``NotFound`` for an unknown model or version."""
    require_version(lifecycle, model, version)
    mv = lifecycle.version(model, version)
    try:
        manifest = json.loads(tracking.read_text_artifact(mv.run_id, "manifest.json")) if mv.run_id else {}
    except (NotFound, OSError):  # a version registered outside our training runs has no manifest
        manifest = {}
    dataset_hash = mv.tags.get("dataset_hash")
    dataset = dataset_by_hash(lifecycle.conn, dataset_hash) if dataset_hash else None
    recorded = version in lifecycle.record(model).versions
    return _plain(
        {
            "model": model,
            "version": version,
            "state": mv.tags.get("lifecycle_state"),
            "aliases": version_aliases(lifecycle, model).get(version, ""),
            "created": utc_time(mv.creation_timestamp),
            "tags": dict(mv.tags),
            "approvals": lifecycle.approvals(model, version) if recorded else [],
            "compliance_review": lifecycle.review(model, version) if recorded else None,
            "history": history_rows(lifecycle, model, version),
            "deployments": [
                {**row, "checklist": json.loads(row["checklist"])}
                for row in deployments.list_deployments(lifecycle.conn, model)
                if row["version"] == version
            ],
            "governance_problems": lifecycle.consistency_problems(model),
            "lineage": {
                "dataset": {
                    "dataset_id": dataset["dataset_id"],
                    "table": dataset["table_name"],
                    "rows": dataset["row_count"],
                    "first_decision": dataset["first_decision"],
                    "last_decision": dataset["last_decision"],
                }
                if dataset
                else None,
                "feature_views": manifest.get("config", {}).get("feature_views"),
                "feature_graph_hash": manifest.get("feature_graph_hash"),
                "mlflow_run_id": mv.run_id,
                "git_commit": manifest.get("git_commit"),
            },
            "metrics": manifest.get("metrics"),
            "manifest": {k: v for k, v in manifest.items() if k not in ("metrics", "config")},
        }
    )


def _plain(value: Any) -> Any:
    """Datetimes anywhere inside as ISO 8601 UTC text (the CLI's JSON and the API's are then the same)."""
    if isinstance(value, datetime):
        return utc_time(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
