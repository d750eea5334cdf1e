"""Compliance sign-off of a model version: PENDING_REVIEW -> APPROVED or REJECTED, by a reviewer who did not
train it, with a comment; every step in the audit log. PRODUCTION needs an APPROVED review of that version."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mlops_pipelines.lib.lifecycle import REVIEWS_TABLE, ApprovalRequired, Change, Lifecycle, LifecycleError


class ReviewStatus(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


def latest(lifecycle: Lifecycle, model: str, version: str) -> dict[str, Any] | None:
    cursor = lifecycle.conn.execute(
        f"SELECT * FROM {REVIEWS_TABLE} WHERE model = ? AND version = ? ORDER BY requested_at DESC LIMIT 1",
        [model, str(version)],
    )
    row = cursor.fetchone()
    return dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None


def list_reviews(lifecycle: Lifecycle, status: str | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    cursor = lifecycle.conn.execute(f"SELECT * FROM {REVIEWS_TABLE} {where} ORDER BY requested_at DESC", params)
    return [dict(zip([d[0] for d in cursor.description], row, strict=True)) for row in cursor.fetchall()]


def request_review(lifecycle: Lifecycle, model: str, version: str, *, report_uri: str, actor: str) -> None:
    """A new compliance report opens a review (a newer report supersedes an older pending one)."""
    now = datetime.now(UTC)
    insert = (
        f"INSERT INTO {REVIEWS_TABLE} VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
        [model, str(version), ReviewStatus.PENDING_REVIEW.value, report_uri, actor, now],
    )
    state = lifecycle.state(model, version)
    change = Change(str(version), "review_requested", state, state, f"compliance report {report_uri}")
    lifecycle.record(model, actor, [change], {}, extra=insert)


def decide(lifecycle: Lifecycle, model: str, version: str, *, approve: bool, reviewer: str, comment: str) -> str:
    """APPROVED or REJECTED; the reviewer must not be the version's trainer, and a comment is required."""
    review = latest(lifecycle, model, version)
    if review is None or review["status"] != ReviewStatus.PENDING_REVIEW:
        status = review["status"] if review else "no review"
        raise LifecycleError(f"{model} v{version}: nothing pending review ({status})")
    trainer = lifecycle.version(model, version).tags.get("trained_by")
    if reviewer == trainer:
        raise ApprovalRequired(f"{model} v{version}: {reviewer!r} trained this version and cannot review it")
    if not comment.strip():
        raise ValueError("a review decision needs a comment")
    status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
    update = (
        f"UPDATE {REVIEWS_TABLE} SET status = ?, reviewer = ?, comment = ?, decided_at = ? "
        "WHERE model = ? AND version = ? AND requested_at = ?",
        [status.value, reviewer, comment, datetime.now(UTC), model, str(version), review["requested_at"]],
    )
    state = lifecycle.state(model, version)
    action = "review_approved" if approve else "review_rejected"
    lifecycle.record(model, reviewer, [Change(str(version), action, state, state, comment)], {}, extra=update)
    return status.value
