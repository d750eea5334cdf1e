"""The governed model lifecycle (ARCHITECTURE §5).

State lives in MLflow (version tag ``lifecycle_state`` and the aliases ``production``, ``staging``,
``challenger``); every change also appends a row to ``governance.model_audit_log`` in the warehouse. Each
operation runs while holding a read-write connection to the warehouse: DuckDB admits one writing process per
file, so that connection is also the cross-process mutex that keeps two promotions of the same model from
interleaving (and MLflow's SQLite store from seeing two writers). Inside it, the audit rows are inserted in a
transaction that commits only after MLflow has been updated; when an MLflow call fails, the MLflow changes
already made are taken back and the audit rows rolled back, so both stay as they were (``consistency_problems``
verifies that the two agree, and reports what a failed undo would leave).
"""

import hashlib
import json
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import duckdb
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib import warehouse
from mlops_pipelines.lib.policy import PolicyResult

AUDIT_TABLE = "governance.model_audit_log"
APPROVALS_TABLE = "governance.model_approvals"
REVIEWS_TABLE = "governance.model_reviews"
STATE_TAG = "lifecycle_state"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class State(StrEnum):
    DRAFT = "DRAFT"
    TRAINED = "TRAINED"
    VALIDATED = "VALIDATED"
    STAGING = "STAGING"
    PRODUCTION = "PRODUCTION"
    RETIRED = "RETIRED"


ALLOWED: frozenset[tuple[State, State]] = frozenset(
    {
        (State.DRAFT, State.TRAINED),
        (State.TRAINED, State.VALIDATED),
        (State.VALIDATED, State.STAGING),
        (State.STAGING, State.PRODUCTION),
        (State.PRODUCTION, State.RETIRED),
        (State.STAGING, State.TRAINED),  # failed (re)validation
        (State.PRODUCTION, State.STAGING),  # rollback, or superseded by a new production version
    }
)


class IllegalTransition(ValueError):
    def __init__(self, model: str, version: str, from_state: str, to_state: str) -> None:
        super().__init__(f"{model} v{version}: transition {from_state} -> {to_state} is not allowed")
        self.from_state, self.to_state = from_state, to_state


class ApprovalRequired(PermissionError):
    """PRODUCTION needs an approval by someone other than the trainer and the requester (four-eyes)."""


class LifecycleError(RuntimeError):
    """An operation that cannot proceed in the current state (nothing to roll back to, policy failed, ...)."""


def check_transition(model: str, version: str, from_state: str, to_state: str) -> None:
    try:
        pair = (State(from_state), State(to_state))
    except ValueError as exc:
        raise IllegalTransition(model, version, from_state, to_state) from exc
    if pair not in ALLOWED:
        raise IllegalTransition(model, version, from_state, to_state)


_AUDIT_DDL = f"""
CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
    seq BIGINT PRIMARY KEY, operation_id VARCHAR NOT NULL, occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
    actor VARCHAR NOT NULL, model VARCHAR NOT NULL, version VARCHAR NOT NULL, action VARCHAR NOT NULL,
    from_state VARCHAR, to_state VARCHAR, reason VARCHAR, policy_hash VARCHAR, policy_result VARCHAR,
    approvals VARCHAR, row_hash VARCHAR
)"""
# Each row's hash covers its content and the previous row's hash: editing or deleting a row breaks the chain
# from there on; the newest hash is also kept on the registered model in MLflow (AUDIT_HEAD_TAG), so cutting
# the tail off the table shows too.
_CHAINED = (
    "seq, operation_id, epoch_us(occurred_at), actor, model, version, action, from_state, to_state, reason, "
    "policy_hash, policy_result, approvals"
)
AUDIT_HEAD_TAG = "audit_head"
_APPROVALS_DDL = f"""
CREATE TABLE IF NOT EXISTS {APPROVALS_TABLE} (
    model VARCHAR NOT NULL, version VARCHAR NOT NULL, approver VARCHAR NOT NULL, comment VARCHAR,
    approved_at TIMESTAMP WITH TIME ZONE NOT NULL
)"""


_REVIEWS_DDL = f"""
CREATE TABLE IF NOT EXISTS {REVIEWS_TABLE} (
    model VARCHAR NOT NULL, version VARCHAR NOT NULL, status VARCHAR NOT NULL, report_uri VARCHAR,
    requested_by VARCHAR, requested_at TIMESTAMP WITH TIME ZONE, reviewer VARCHAR, comment VARCHAR,
    decided_at TIMESTAMP WITH TIME ZONE
)"""


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for ddl in (_AUDIT_DDL, _APPROVALS_DDL, _REVIEWS_DDL):
        conn.execute(ddl)
    conn.execute(f"ALTER TABLE {AUDIT_TABLE} ADD COLUMN IF NOT EXISTS row_hash VARCHAR")  # logs from before it


def chain_hash(previous: str, row: tuple[Any, ...]) -> str:
    """The hash of one audit row (its ``_CHAINED`` values, in order) after ``previous``."""
    return hashlib.sha256(json.dumps([previous, *row], default=str).encode()).hexdigest()


@dataclass
class Change:
    version: str
    action: str
    from_state: str | None
    to_state: str | None
    reason: str
    policy: PolicyResult | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)


class Lifecycle:
    """Lifecycle operations for every model; ``conn`` must be a read-write warehouse connection."""

    def __init__(self, client: MlflowClient, conn: duckdb.DuckDBPyConnection) -> None:
        self.client, self.conn = client, conn
        ensure_tables(conn)

    # ---- reading -----------------------------------------------------------------------------------------
    def version(self, model: str, version: str | int) -> ModelVersion:
        return self.client.get_model_version(model, str(version))

    def state(self, model: str, version: str | int) -> str:
        return self.version(model, version).tags.get(STATE_TAG, State.DRAFT.value)

    def versions(self, model: str) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"name = '{model}'")
        return sorted(found, key=lambda v: int(v.version))

    def alias_version(self, model: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def approvals(self, model: str, version: str | int, *, current_stay: bool = False) -> list[dict[str, Any]]:
        """Every approval of the version; ``current_stay``: only those given since it last entered STAGING, the
        ones that count. An approval does not carry over a failed re-validation or a rollback."""
        since = "TIMESTAMPTZ '-infinity'"
        if current_stay:
            since = (
                f"(SELECT coalesce(max(occurred_at), TIMESTAMPTZ 'infinity') FROM {AUDIT_TABLE} WHERE model = $1 "
                "AND version = $2 AND to_state = 'STAGING' AND from_state IS DISTINCT FROM 'STAGING')"
            )
        rows = self.conn.execute(
            f"SELECT approver, comment, approved_at FROM {APPROVALS_TABLE} WHERE model = $1 AND version = $2 "
            f"AND approved_at >= {since} ORDER BY 3",
            [model, str(version)],
        ).fetchall()
        return [{"approver": r[0], "comment": r[1], "at": r[2].isoformat()} for r in rows]

    def history(self, model: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(f"SELECT * FROM {AUDIT_TABLE} WHERE model = ? ORDER BY seq", [model])
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    # ---- writing -----------------------------------------------------------------------------------------
    def record(
        self,
        model: str,
        actor: str,
        changes: list[Change],
        aliases: dict[str, str | None],
        extra: tuple[str, list[Any]] | None = None,
    ) -> str:
        """Audit rows (+ ``extra`` SQL) and MLflow tags/aliases as one operation: the warehouse transaction
        commits after MLflow has been updated, and a failed MLflow call undoes the MLflow changes before it."""
        operation = uuid.uuid4().hex
        now = datetime.now(UTC)
        with warehouse.transaction(self.conn):
            if extra is not None:
                self.conn.execute(*extra)
            row = self.conn.execute(
                f"SELECT seq, coalesce(row_hash, '') FROM {AUDIT_TABLE} ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, head = (int(row[0]), str(row[1])) if row else (0, "")
            for change in changes:
                seq += 1
                values = (
                    seq,
                    operation,
                    (now - EPOCH) // timedelta(microseconds=1),
                    actor,
                    model,
                    change.version,
                    change.action,
                    change.from_state,
                    change.to_state,
                    change.reason,
                    change.policy.policy_hash if change.policy else None,
                    json.dumps(change.policy.as_dict(), default=str) if change.policy else None,
                    json.dumps(change.approvals),
                )
                head = chain_hash(head, values)
                self.conn.execute(
                    f"INSERT INTO {AUDIT_TABLE} VALUES (?, ?, make_timestamptz(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [*values, head],
                )
            undo: list[tuple[str, str, str | None]] = []  # MLflow changes made so far, to take back on failure
            try:
                undo.append(("head", model, self._audit_head(model)))
                self.client.set_registered_model_tag(model, AUDIT_HEAD_TAG, f"{seq}:{head}")
                for change in changes:
                    if change.to_state is not None and change.to_state != change.from_state:
                        self.client.set_model_version_tag(model, change.version, STATE_TAG, change.to_state)
                        undo.append(("tag", change.version, change.from_state))
                for alias, version in aliases.items():
                    undo.append(("alias", alias, self.alias_version(model, alias)))
                    self._point_alias(model, alias, version)
            except BaseException:
                for kind, name, value in reversed(undo):  # best effort; consistency_problems reports the rest
                    with suppress(MlflowException):
                        if kind == "tag" and value is not None:
                            self.client.set_model_version_tag(model, name, STATE_TAG, value)
                        elif kind == "alias":
                            self._point_alias(model, name, value)
                        elif kind == "head" and value is not None:
                            self.client.set_registered_model_tag(model, AUDIT_HEAD_TAG, value)
                        elif kind == "head":
                            self.client.delete_registered_model_tag(model, AUDIT_HEAD_TAG)
                raise
        return operation

    def _audit_head(self, model: str) -> str | None:
        """``seq:hash`` of the model's newest audit row, as MLflow keeps it."""
        try:
            return self.client.get_registered_model(model).tags.get(AUDIT_HEAD_TAG)
        except MlflowException:
            return None

    def _point_alias(self, model: str, alias: str, version: str | None) -> None:
        if version is None:
            if self.alias_version(model, alias) is not None:
                self.client.delete_registered_model_alias(model, alias)
        else:
            self.client.set_registered_model_alias(model, alias, version)

    def transition(
        self,
        model: str,
        version: str | int,
        to_state: State,
        *,
        actor: str,
        reason: str,
        policy: PolicyResult | None = None,
    ) -> None:
        version = str(version)
        current = self.state(model, version)
        check_transition(model, version, current, to_state)
        if to_state == State.PRODUCTION:
            raise LifecycleError("use promote_to_production: PRODUCTION needs approvals and moves the old version out")
        self.record(
            model,
            actor,
            [Change(version, "transition", current, to_state, reason, policy)],
            self._aliases_after(model, version, to_state),
        )

    def _aliases_after(self, model: str, version: str, to_state: State) -> dict[str, str | None]:
        """Alias changes implied by ``version`` entering ``to_state``."""
        aliases: dict[str, str | None] = {}
        holds = {a: self.alias_version(model, a) for a in ("production", "staging", "challenger")}
        if to_state == State.STAGING:
            aliases["staging"] = version
            if holds["production"] not in (None, version):
                aliases["challenger"] = version
        else:
            for alias in ("staging", "challenger"):
                if holds[alias] == version:
                    aliases[alias] = None
        if to_state != State.PRODUCTION and holds["production"] == version:
            aliases["production"] = None
        return aliases

    def register(
        self,
        model: str,
        *,
        source: str,
        run_id: str,
        model_id: str | None,
        tags: dict[str, str],
        actor: str,
        reason: str,
    ) -> ModelVersion:
        """New version, DRAFT until its artifacts are in place, then TRAINED (two audit rows)."""
        try:
            self.client.get_registered_model(model)
        except MlflowException:
            self.client.create_registered_model(model, tags={"managed_by": "mlops_pipelines"})
        mv = self.client.create_model_version(
            model, source=source, run_id=run_id, model_id=model_id, tags={**tags, STATE_TAG: State.DRAFT.value}
        )
        version = str(mv.version)
        self.record(model, actor, [Change(version, "register", None, State.DRAFT, "version created")], {})
        self.transition(model, version, State.TRAINED, actor=actor, reason=reason)
        return self.version(model, version)

    def gate(self, model: str, version: str | int, result: PolicyResult, *, actor: str) -> str:
        """Apply a policy evaluation: pass -> VALIDATED -> STAGING; fail -> stays (or goes back to) TRAINED."""
        version = str(version)
        current = self.state(model, version)
        if result.passed:
            if current == State.TRAINED:
                self.transition(
                    model, version, State.VALIDATED, actor=actor, reason="promotion policy passed", policy=result
                )
                current = State.VALIDATED
            if current == State.VALIDATED:
                self.transition(
                    model,
                    version,
                    State.STAGING,
                    actor=actor,
                    reason="policy passed: staged, awaiting approval for production",
                    policy=result,
                )
            return self.state(model, version)
        reason = "promotion policy failed: " + "; ".join(result.failures())
        if current == State.STAGING:
            self.transition(model, version, State.TRAINED, actor=actor, reason=reason, policy=result)
        else:
            self.record(model, actor, [Change(version, "gate_rejected", current, current, reason, result)], {})
        return self.state(model, version)

    def approve(self, model: str, version: str | int, *, approver: str, comment: str) -> None:
        version = str(version)
        mv = self.version(model, version)
        trainer = mv.tags.get("trained_by")
        if approver == trainer:
            raise ApprovalRequired(f"{model} v{version}: {approver!r} trained this version and cannot approve it")
        if mv.tags.get(STATE_TAG) != State.STAGING:
            raise LifecycleError(f"{model} v{version} is {mv.tags.get(STATE_TAG)}; only STAGING versions are approved")
        insert = (
            f"INSERT INTO {APPROVALS_TABLE} VALUES (?, ?, ?, ?, ?)",
            [model, version, approver, comment, datetime.now(UTC)],
        )
        change = Change(
            version,
            "approval",
            State.STAGING,
            State.STAGING,
            comment,
            approvals=[{"approver": approver, "comment": comment}],
        )
        self.record(model, approver, [change], {}, extra=insert)

    def promote_to_production(self, model: str, version: str | int, *, actor: str, reason: str) -> str | None:
        """STAGING -> PRODUCTION with a four-eyes approval; the previous production version moves to STAGING in
        the same operation. Returns the version that left production (the rollback target)."""
        version = str(version)
        mv = self.version(model, version)
        check_transition(model, version, mv.tags.get(STATE_TAG, State.DRAFT), State.PRODUCTION)
        trainer = mv.tags.get("trained_by")
        current = self.approvals(model, version, current_stay=True)
        valid = [a for a in current if a["approver"] not in (trainer, actor)]
        if not valid:
            raise ApprovalRequired(
                f"{model} v{version}: PRODUCTION needs an approval, given since it last entered STAGING, by someone "
                f"other than the trainer ({trainer!r}) and the requester ({actor!r}); approvals of this stay: "
                f"{[a['approver'] for a in current]}"
            )
        review = self.conn.execute(
            f"SELECT status FROM {REVIEWS_TABLE} WHERE model = ? AND version = ? ORDER BY requested_at DESC LIMIT 1",
            [model, version],
        ).fetchone()
        if review is None or review[0] != "APPROVED":
            raise ApprovalRequired(
                f"{model} v{version}: PRODUCTION needs an APPROVED compliance review "
                f"({review[0] if review else 'no compliance review yet'})"
            )
        previous = self.alias_version(model, "production")
        changes = []
        if previous is not None and previous != version:
            changes.append(Change(previous, "superseded", State.PRODUCTION, State.STAGING, f"superseded by v{version}"))
        changes.append(Change(version, "transition", State.STAGING, State.PRODUCTION, reason, approvals=valid))
        aliases: dict[str, str | None] = {"production": version}
        for alias in ("staging", "challenger"):
            if self.alias_version(model, alias) == version:
                aliases[alias] = None
        if previous is not None and previous != version:
            aliases["staging"] = previous  # the rollback target stays one step away
        self.record(model, actor, changes, aliases)
        return previous

    def rollback(self, model: str, *, actor: str, reason: str) -> str:
        """PRODUCTION -> STAGING for the current version, the version it superseded back to PRODUCTION."""
        current = self.alias_version(model, "production")
        if current is None:
            raise LifecycleError(f"{model}: no production version to roll back")
        target = self.rollback_target(model)
        if target is None:
            raise LifecycleError(f"{model} v{current}: no previous production version to roll back to")
        if self.state(model, target) != State.STAGING:
            raise LifecycleError(f"{model}: rollback target v{target} is {self.state(model, target)}, not STAGING")
        self.record(
            model,
            actor,
            [
                Change(current, "rollback", State.PRODUCTION, State.STAGING, reason),
                Change(target, "rollback", State.STAGING, State.PRODUCTION, f"restored by rollback of v{current}"),
            ],
            {"production": target, "staging": current, "challenger": None},
        )
        return target

    def rollback_target(self, model: str) -> str | None:
        """The version the current production version superseded (from the audit log)."""
        current = self.alias_version(model, "production")
        rows = self.conn.execute(
            f"""SELECT s.version FROM {AUDIT_TABLE} s JOIN {AUDIT_TABLE} p USING (operation_id)
                WHERE s.model = ? AND s.action = 'superseded' AND p.to_state = 'PRODUCTION' AND p.version = ?
                ORDER BY s.seq DESC LIMIT 1""",
            [model, current],
        ).fetchone()
        return rows[0] if rows else None

    def retire(self, model: str, version: str | int, *, actor: str, reason: str) -> None:
        """PRODUCTION -> RETIRED: the version stops serving; every artifact stays in MLflow."""
        self.transition(model, version, State.RETIRED, actor=actor, reason=reason)

    def record_override(self, model: str, version: str | int, *, actor: str, reason: str) -> None:
        """An explicit override (e.g. serving despite a feature-graph mismatch) is itself audited."""
        state = self.state(model, version)
        self.record(model, actor, [Change(str(version), "override", state, state, reason)], {})

    # ---- verification ------------------------------------------------------------------------------------
    def consistency_problems(self, model: str) -> list[str]:
        """MLflow state vs the audit log, aliases vs states, and the audit sequence (no gaps)."""
        problems = []
        last_state = {
            row[0]: row[1]
            for row in self.conn.execute(
                f"""SELECT version, to_state FROM {AUDIT_TABLE} WHERE model = ? AND to_state IS NOT NULL
                    QUALIFY row_number() OVER (PARTITION BY version ORDER BY seq DESC) = 1""",
                [model],
            ).fetchall()
        }
        for mv in self.versions(model):
            tag = mv.tags.get(STATE_TAG)
            if last_state.get(str(mv.version)) != tag:
                problems.append(f"v{mv.version}: MLflow says {tag}, audit log says {last_state.get(str(mv.version))}")
        expected = {"production": State.PRODUCTION, "staging": State.STAGING, "challenger": State.STAGING}
        for alias, state in expected.items():
            holder = self.alias_version(model, alias)
            if holder is not None and self.state(model, holder) != state:
                problems.append(f"alias {alias} -> v{holder}, which is {self.state(model, holder)}")
        in_production = [str(mv.version) for mv in self.versions(model) if mv.tags.get(STATE_TAG) == State.PRODUCTION]
        if len(in_production) > 1:
            problems.append(f"more than one PRODUCTION version: {in_production}")
        seqs = [r[0] for r in self.conn.execute(f"SELECT seq FROM {AUDIT_TABLE} ORDER BY seq").fetchall()]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append("audit log sequence has gaps")
        return problems + self.audit_chain_problems(model)

    def audit_chain_problems(self, model: str) -> list[str]:
        """Rows whose hash does not follow from their content and the row before (edited, inserted or deleted
        rows), and a model whose newest audit row recorded in MLflow is no longer in the table."""
        rows = self.conn.execute(f"SELECT {_CHAINED}, row_hash FROM {AUDIT_TABLE} ORDER BY seq").fetchall()
        previous, problems, hashes = "", [], {}
        for *values, stored in rows:
            if stored is None:  # written before the log was chained: the chain starts after it
                previous = ""
                continue
            if chain_hash(previous, tuple(values)) != stored:
                problems.append(f"audit row {values[0]} was changed, or a row before it removed")
                break
            previous = hashes[values[0]] = stored
        registered = self._audit_head(model)
        if registered:
            seq, head = registered.split(":", 1)
            if hashes.get(int(seq)) != head and not problems:  # a broken chain was reported already
                problems.append(f"audit row {seq}, the newest of {model} per MLflow, is missing or changed")
        return problems
