"""The governed model lifecycle: DRAFT -> TRAINED -> VALIDATED -> STAGING -> PRODUCTION -> RETIRED.

The audit log (``lib/governance/audit.py``, HMAC-chained) is the record; a model's state, approvals, compliance reviews,
aliases and the artifact checksum recorded at registration are all derived from its rows by ``replay``. MLflow
holds a projection (the version tag ``lifecycle_state`` and the aliases ``production``, ``staging``,
``challenger``) that each operation updates together with the log, and that ``consistency_problems`` compares.

The only ways to change state are the guarded operations of ``Lifecycle`` (register, gate, approve,
request_review, decide_review, promote_to_production, rollback, retire, record_override, record_traffic, resync).
A traffic row (a deployment's shadow / canary configuration) changes no state or alias. ``replay``
re-derives every transition's preconditions from the log itself, so a row that skipped them (written by a
direct INSERT, or through the private ``_write``) shows as a problem, and a model with problems is refused for
approvals, promotion and serving.

Identity: actor names are normalized (Unicode NFKC, trimmed, case-folded) before they are compared or stored.
PRODUCTION needs three people besides the trainer: a compliance reviewer, an approver, a requester, all
different. Names are self-declared by the caller (CLI ``--actor``, job config); see README "Who is who".

Each operation runs while holding a read-write connection to the warehouse: DuckDB admits one writing process
per file, so that connection is also the cross-process mutex that keeps two promotions of the same model from
interleaving. Inside it the audit rows are inserted in a transaction that commits only after MLflow has been
updated; when an MLflow call fails, the MLflow changes already made are taken back and the rows rolled back.
"""

import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import MlopsError
from mlops_pipelines.lib.governance import audit
from mlops_pipelines.lib.governance.audit import AUDIT_HEAD_TAG, Entry, Row
from mlops_pipelines.lib.governance.promotion_policy import PolicyResult

STATE_TAG = "lifecycle_state"
ALIASES = ("production", "staging", "challenger")
# Recorded in the register row; the first two are checked against the MLflow version tags and, at load, against
# the artifact and the live feature graph.
REGISTERED_FIELDS = ("artifact_sha256", "feature_graph_hash", "trained_by")


class State(StrEnum):
    DRAFT = "DRAFT"
    TRAINED = "TRAINED"
    VALIDATED = "VALIDATED"
    STAGING = "STAGING"
    PRODUCTION = "PRODUCTION"
    RETIRED = "RETIRED"


class ReviewStatus(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


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


class IllegalTransition(MlopsError, ValueError):
    def __init__(self, model: str, version: str, from_state: str, to_state: str) -> None:
        super().__init__(f"{model} v{version}: transition {from_state} -> {to_state} is not allowed")
        self.from_state, self.to_state = from_state, to_state


class ApprovalRequired(MlopsError, PermissionError):
    """PRODUCTION needs an approval and a compliance sign-off by people other than the trainer and requester."""


class LifecycleError(MlopsError, RuntimeError):
    """An operation that cannot proceed in the current state (nothing to roll back to, policy failed, ...)."""


class InconsistentLifecycle(LifecycleError):
    """The audit log failed verification, or MLflow disagrees with it: refused until an operator resolves it."""


def check_transition(model: str, version: str, from_state: str, to_state: str) -> None:
    try:
        pair = (State(from_state), State(to_state))
    except ValueError as exc:
        raise IllegalTransition(model, version, from_state, to_state) from exc
    if pair not in ALLOWED:
        raise IllegalTransition(model, version, from_state, to_state)


def normalize_actor(name: str) -> str:
    """One spelling per person: NFKC, trimmed, case-folded (``Alice`` and ``alice `` are the same approver)."""
    text = unicodedata.normalize("NFKC", str(name)).strip().casefold()
    if not text or any(unicodedata.category(c)[0] == "C" for c in text):
        raise ValueError(f"actor name {name!r} is empty or contains control characters")
    return text


@dataclass(frozen=True)
class Rules:
    """What the governance of one kind of governed thing (models, prompts) checks, beyond the shared states,
    transitions and approvals: the fields its register row must record (``registered_fields``; the first
    ``checked_tags`` of them are also MLflow version tags that verification compares), who its author is
    (``author_field``: the trainer of a model, the author of a prompt; never an approver), and whether PRODUCTION
    needs an APPROVED compliance review (``needs_review``). ``override_excludes_approver``: whoever overrode a
    failed gate cannot also approve the version (the override is the first pair of eyes)."""

    registered_fields: tuple[str, ...] = REGISTERED_FIELDS
    checked_tags: tuple[str, ...] = REGISTERED_FIELDS[:2]
    author_field: str = "trained_by"
    author_verb: str = "trained"  # how refusals name the author's part ("'bob' trained this version")
    needs_review: bool = True
    override_excludes_approver: bool = False


MODEL_RULES = Rules()


# ---- the record, derived from the log ----------------------------------------------------------------------
@dataclass
class VersionRecord:
    """What the audit log says about one version."""

    version: str
    state: str
    registered: dict[str, Any]
    approvals: list[dict[str, Any]] = field(default_factory=list)  # every approval, oldest first
    staging_since: int = 0  # seq of the row that last moved it into STAGING
    review: dict[str, Any] | None = None  # the latest compliance review
    was_production: bool = False
    author_field: str = "trained_by"
    overridden_by: str | None = None  # who overrode a failed gate on its way into STAGING (this stay)

    @property
    def trainer(self) -> str:
        """Its author (a model's trainer, a prompt's author): never one of its approvers."""
        return str(self.registered.get(self.author_field, ""))

    def stay_approvals(self) -> list[dict[str, Any]]:
        """Approvals given since it last entered STAGING: the only ones that count."""
        return [a for a in self.approvals if a["seq"] > self.staging_since]


@dataclass
class ModelRecord:
    model: str
    versions: dict[str, VersionRecord] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    superseded: dict[str, str] = field(default_factory=dict)  # production version -> the version it replaced
    head: str | None = None  # seq:hash of the model's newest row
    problems: list[str] = field(default_factory=list)
    traffic: dict[str, dict[str, Any]] = field(default_factory=dict)  # deployment id -> its latest traffic config


def replay(model: str, rows: list[Row], rules: Rules = MODEL_RULES) -> ModelRecord:
    """Rebuild a model's record from its audit rows, checking every row's preconditions as it goes.

    Rows that failed chain verification are reported and ignored: a forged approval never counts. The later rows
    of a version with such a row are applied without judging their preconditions (one tampered row, one problem).
    """
    record = ModelRecord(model)
    by_operation: dict[str, list[Row]] = {}
    for row in rows:
        by_operation.setdefault(row.operation_id, []).append(row)
    tainted: set[str] = set()
    for row in rows:
        record.head = f"{row.seq}:{row.row_hash}"
        if not row.verified:
            record.problems.append(str(row.problem))
            tainted.add(row.version)
            continue
        problem = _apply(record, row, by_operation[row.operation_id], rules)
        if problem and row.version not in tainted:
            record.problems.append(f"v{row.version} (audit row {row.seq}, {row.action}): {problem}")
    return record


def _apply(record: ModelRecord, row: Row, operation: list[Row], rules: Rules) -> str | None:
    """Apply one verified row to ``record`` (as the log says it happened); returns why the row should not have
    been written, if it should not."""
    if "aliases" in row.details:
        for alias, holder in row.details["aliases"].items():
            if holder is None:
                record.aliases.pop(alias, None)
            else:
                record.aliases[alias] = str(holder)
    if row.action == "register":
        if row.version in record.versions:
            return "registered twice"
        record.versions[row.version] = VersionRecord(
            row.version, State.DRAFT, dict(row.details), author_field=rules.author_field
        )
        missing = [f for f in rules.registered_fields if not row.details.get(f)]
        return f"registered without {', '.join(missing)}" if missing else None
    current = record.versions.get(row.version)
    if current is None:
        return "no register row before it"
    if row.action == "resync":
        return None
    if row.action == "traffic":
        record.traffic[str(row.details.get("deployment_id"))] = dict(row.details.get("new") or {})
    problem = None
    if row.from_state != current.state:
        problem = f"says it left {row.from_state}, but the version was {current.state}"
    if row.to_state is None or row.to_state == row.from_state:
        return problem or _apply_event(current, row)
    try:
        check_transition(record.model, row.version, str(row.from_state), str(row.to_state))
    except IllegalTransition as exc:
        problem = problem or str(exc)
    problem = problem or _transition_problem(record, current, row, operation, rules)
    current.state = str(row.to_state)
    if row.to_state == State.STAGING:
        current.staging_since = row.seq
        current.overridden_by = row.actor if row.details.get("overrides") else None
    if row.to_state == State.PRODUCTION:
        current.was_production = True
        replaced = [r.version for r in operation if r.action == "superseded"]
        if row.action == "transition" and replaced:
            record.superseded[row.version] = replaced[0]
    return problem


def _apply_event(current: VersionRecord, row: Row) -> str | None:
    """Rows that do not change the state: approvals, reviews, rejected gates, overrides, resyncs."""
    actor, review = row.actor, current.review
    if row.action == "approval":
        if current.state != State.STAGING:
            return "approval of a version that is not in STAGING"
        if actor == current.trainer:
            return f"{actor!r} approved a version they trained"
        if review and review.get("reviewer") == actor:
            return f"{actor!r} approved a version they also reviewed"
        current.approvals.append({"approver": actor, "comment": row.reason, "at": row.occurred_at, "seq": row.seq})
        return None
    if row.action == "review_requested":
        current.review = {
            "model": row.model,
            "version": row.version,
            "status": ReviewStatus.PENDING_REVIEW.value,
            "report_uri": row.details.get("report_uri"),
            "requested_by": actor,
            "requested_at": row.occurred_at,
            "reviewer": None,
            "comment": None,
            "decided_at": None,
        }
        return None
    if row.action in ("review_approved", "review_rejected"):
        if review is None or review["status"] != ReviewStatus.PENDING_REVIEW:
            return "a review decision with no pending review"
        status = ReviewStatus.APPROVED if row.action == "review_approved" else ReviewStatus.REJECTED
        review.update(status=status.value, reviewer=actor, comment=row.reason, decided_at=row.occurred_at)
        if actor == current.trainer:
            return f"{actor!r} reviewed a version they trained"
        if actor in {a["approver"] for a in current.stay_approvals()}:
            return f"{actor!r} reviewed a version they also approved"
        return None
    if row.action == "gate_rejected":
        return (
            None if row.policy_result and not row.policy_result.get("passed") else "rejection without a failed policy"
        )
    if row.action in ("override", "traffic"):
        return None
    return f"unknown action {row.action!r}"


def _transition_problem(
    record: ModelRecord, current: VersionRecord, row: Row, operation: list[Row], rules: Rules
) -> str | None:
    """The preconditions of a state change, judged from the log as it stood before the row."""
    passed = bool(row.policy_result and row.policy_result.get("passed"))
    target = row.to_state
    if target in (State.VALIDATED, State.STAGING) and row.from_state != State.PRODUCTION and not passed:
        return f"{target} without a passing policy evaluation"
    if (row.from_state, target) == (State.STAGING, State.TRAINED) and (passed or row.policy_result is None):
        return "sent back to TRAINED without a failed policy evaluation"
    if target == State.PRODUCTION and row.action == "rollback":
        return None if current.was_production else "restored by a rollback but never was in production"
    if target == State.PRODUCTION:
        return _four_eyes_problem(current, row.actor, rules)
    if (row.from_state, target) == (State.PRODUCTION, State.STAGING):
        into_production = [r for r in operation if r.to_state == State.PRODUCTION and r.version != row.version]
        return None if into_production else "left PRODUCTION without another version taking its place"
    return None


def _four_eyes_problem(current: VersionRecord, requester: str, rules: Rules = MODEL_RULES) -> str | None:
    """PRODUCTION needs an approval of this stay in STAGING and an APPROVED compliance review, by three people
    who are not the trainer: approver, reviewer and requester all different. Without ``rules.needs_review``
    (prompts): an approval by someone other than the author and the requester (and, with
    ``rules.override_excludes_approver``, other than whoever overrode a failed gate)."""
    if not rules.needs_review:
        excluded = {current.trainer, requester}
        if rules.override_excludes_approver and current.overridden_by:
            excluded.add(current.overridden_by)
        if not [a for a in current.stay_approvals() if a["approver"] not in excluded]:
            return (
                "PRODUCTION needs an approval, given since it last entered STAGING, by someone other than the author "
                f"({current.trainer!r}) and the requester ({requester!r})"
                + (f" and the override's requester ({current.overridden_by!r})" if current.overridden_by else "")
            )
        return None
    review = current.review or {}
    approved = review.get("status") == ReviewStatus.APPROVED
    reviewer = review.get("reviewer") if approved else None
    if not [a for a in current.stay_approvals() if a["approver"] not in {current.trainer, requester, reviewer}]:
        return (
            "PRODUCTION needs an approval, given since it last entered STAGING, by someone other than the trainer "
            f"({current.trainer!r}), the requester ({requester!r}) and the compliance reviewer ({reviewer!r})"
        )
    if not approved:
        return f"PRODUCTION needs an APPROVED compliance review ({review.get('status', 'no compliance review yet')})"
    if reviewer in (current.trainer, requester):
        return f"PRODUCTION requested by {requester!r}, who also signed the compliance review"
    return None


# ---- the operations ----------------------------------------------------------------------------------------
class Lifecycle:
    """Lifecycle operations for every model. Reads work on a read-only warehouse connection; operations need a
    read-write one. ``audit_key``: the HMAC key of the audit log (``audit.load_key``).

    Other governed kinds (prompts: ``lib/prompts/lifecycle.py``) subclass it: the same log, chain, states and
    guarded operations, with their own ``rules``, their audit rows under ``subject_prefix`` + name (a prefix with a
    character no MLflow model name may hold, so the kinds never mix), and the MLflow projection hooks (the
    methods under "the MLflow projection") pointed at their part of MLflow."""

    rules: Rules = MODEL_RULES
    subject_prefix = ""  # models: the plain name

    def __init__(self, client: MlflowClient, conn: duckdb.DuckDBPyConnection, audit_key: bytes) -> None:
        self.client, self.conn, self._key = client, conn, audit_key

    def of_kind(self, kind: "type[L]") -> "L":
        """The same audit log, MLflow and connection, governing another kind (a prompt section of the models'
        audit pack, say): nothing is opened or locked again."""
        return kind(self.client, self.conn, self._key)

    def _subject(self, name: str) -> str:
        """The ``model`` column of the audit log for ``name``."""
        return self.subject_prefix + name

    def _owned(self, subject: str) -> str | None:
        """The name behind an audit subject of this kind, None for another kind's rows."""
        if self.subject_prefix:
            return subject[len(self.subject_prefix) :] if subject.startswith(self.subject_prefix) else None
        return None if ":" in subject else subject

    # ---- reading -----------------------------------------------------------------------------------------
    def version(self, model: str, version: str | int) -> ModelVersion:
        return self.client.get_model_version(model, str(version))

    def versions(self, model: str) -> list[ModelVersion]:
        """The versions MLflow has (compare ``record(model).versions``, what the audit log has)."""
        found = self.client.search_model_versions(f"name = '{model.replace(chr(39), chr(39) * 2)}'")
        return sorted(found, key=lambda v: int(v.version))

    def record(self, model: str) -> ModelRecord:
        """The model's record, replayed from its verified audit rows."""
        subject = self._subject(model)
        return replay(model, [r for r in audit.read(self.conn, self._key) if r.model == subject], self.rules)

    def records(self) -> dict[str, ModelRecord]:
        """Every model the audit log knows, replayed (one read of the log)."""
        by_model: dict[str, list[Row]] = {}
        for row in audit.read(self.conn, self._key):
            name = self._owned(row.model)
            if name is not None:
                by_model.setdefault(name, []).append(row)
        return {model: replay(model, rows, self.rules) for model, rows in by_model.items()}

    def models(self) -> list[str]:
        """Every model the audit log knows, and every one MLflow knows."""
        return sorted(set(self.records()) | {m.name for m in self.client.search_registered_models()})

    def _version_record(self, model: str, version: str | int) -> VersionRecord:
        found = self.record(model).versions.get(str(version))
        if found is None:
            raise LifecycleError(f"{model} v{version} has no audit history (not registered through the lifecycle)")
        return found

    def state(self, model: str, version: str | int) -> str:
        return self._version_record(model, version).state

    # ---- which version? (the one set of answers, from the audit log) --------------------------------------
    def newest(self, model: str) -> str | None:
        """The most recently registered version."""
        versions = self.record(model).versions
        return max(versions, key=int) if versions else None

    def champion(self, model: str) -> str | None:
        """The version in production (alias ``production``)."""
        return self.record(model).aliases.get("production")

    def challenger(self, model: str) -> str | None:
        """The staged version that challenges the champion (alias ``challenger``)."""
        return self.record(model).aliases.get("challenger")

    def deployed(self, model: str) -> tuple[str, str] | None:
        """What serves and is monitored: ``(version, "production")``, else ``(version, "staging")``, else None."""
        aliases = self.record(model).aliases
        return next(((aliases[a], a) for a in ("production", "staging") if a in aliases), None)

    def run_id(self, model: str, version: str | int) -> str:
        """The MLflow run that trained the version, as recorded at registration."""
        run_id = self._version_record(model, version).registered.get("run_id")
        if not run_id:
            raise LifecycleError(f"{model} v{version} has no training run on record")
        return str(run_id)

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version holding ``alias`` in MLflow (the projection; ``record(model).aliases`` is the log's)."""
        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def approvals(self, model: str, version: str | int, *, current_stay: bool = False) -> list[dict[str, Any]]:
        """Every approval of the version; ``current_stay``: only those given since it last entered STAGING, the
        ones that count. An approval does not carry over a failed re-validation or a rollback."""
        found = self._version_record(model, version)
        approvals = found.stay_approvals() if current_stay else found.approvals
        return [{"approver": a["approver"], "comment": a["comment"], "at": a["at"].isoformat()} for a in approvals]

    def review(self, model: str, version: str | int) -> dict[str, Any] | None:
        """The latest compliance review of the version (status, report, reviewer, comment)."""
        return self._version_record(model, version).review

    def reviews(self, status: str | None = None) -> list[dict[str, Any]]:
        """The latest review of every version, newest request first."""
        found = [
            v.review
            for record in self.records().values()
            for v in record.versions.values()
            if v.review is not None and (status is None or v.review["status"] == status)
        ]
        return sorted(found, key=lambda r: r["requested_at"], reverse=True)

    def rows(self, *, every_kind: bool = False) -> list[Row]:
        """The audit rows of this kind's subjects (with ``every_kind``: of every governed kind, the whole log),
        each verified against the whole chain, oldest first."""
        found = audit.read(self.conn, self._key)
        return found if every_kind else [r for r in found if self._owned(r.model) is not None]

    def history(self, model: str) -> list[dict[str, Any]]:
        """The model's audit rows as dicts (with ``verified``), oldest first."""
        subject = self._subject(model)
        return [r.__dict__ for r in audit.read(self.conn, self._key) if r.model == subject]

    def rollback_target(self, model: str) -> str | None:
        """The version the current production version superseded."""
        record = self.record(model)
        current = record.aliases.get("production")
        return record.superseded.get(current) if current else None

    # ---- verification ------------------------------------------------------------------------------------
    def consistency_problems(self, model: str) -> list[str]:
        """Everything that is wrong with a model's governance, empty when all is well:

        - audit rows that fail the chain (edited, forged, NULL hash), or whose preconditions did not hold;
        - MLflow's state tags, aliases, and recorded hashes vs the log; versions only one side has;
        - the model's newest row as MLflow recorded it missing from the log (rows cut off the end).
        """
        return self.verify(model)[1]

    def require_consistent(self, model: str) -> ModelRecord:
        """The model's record, or ``InconsistentLifecycle`` naming every problem."""
        record, problems = self.verify(model)
        if problems:
            raise InconsistentLifecycle(
                f"{model}: governance record failed verification, refused until resolved: " + "; ".join(problems)
            )
        return record

    def verify(self, model: str) -> tuple[ModelRecord, list[str]]:
        """The model's record and its consistency problems (see ``consistency_problems``)."""
        record = self.record(model)
        problems = list(record.problems)
        if audit.has_sequence_gaps(self.conn):
            problems.append("audit log sequence has gaps")
        registered = self._registered(model)
        mlflow_versions = {str(mv.version): mv for mv in self.versions(model)} if registered else {}
        for version, logged in record.versions.items():
            mv = mlflow_versions.get(version)
            if mv is None:
                problems.append(f"v{version} is in the audit log but not in the MLflow registry (registry lost?)")
                continue
            if mv.tags.get(STATE_TAG) != logged.state:
                problems.append(f"v{version}: MLflow says {mv.tags.get(STATE_TAG)}, audit log says {logged.state}")
            for name in self.rules.checked_tags:
                if mv.tags.get(name) != logged.registered.get(name):
                    problems.append(f"v{version}: MLflow tag {name} differs from the value recorded at registration")
            problems.extend(self._version_problems(model, mv, logged))
        for version in sorted(set(mlflow_versions) - set(record.versions), key=int):
            problems.append(f"v{version} is in MLflow but has no audit history (registered outside the lifecycle)")
        if registered is not None:
            actual, head = registered
            if actual != record.aliases:
                problems.append(f"MLflow aliases {actual} differ from the audit log's {record.aliases}")
            if head and head != record.head and not record.problems:  # a broken row was reported already
                problems.append(
                    f"audit row {head.split(':')[0]}, the newest of {model} per MLflow, is missing or changed"
                )
        states = [v for v, r in record.versions.items() if r.state == State.PRODUCTION]
        if len(states) > 1:
            problems.append(f"more than one PRODUCTION version: {states}")
        return record, problems

    # ---- the MLflow projection (what a governed kind points at its part of MLflow) ----------------------------
    def _registered(self, model: str) -> tuple[dict[str, str], str | None] | None:
        """The lifecycle aliases MLflow holds and its audit-head tag; None when MLflow has no such model."""
        try:
            registered = self.client.get_registered_model(model)
        except MlflowException:
            return None
        aliases = {alias: str(v) for alias, v in registered.aliases.items() if alias in ALIASES}
        return aliases, registered.tags.get(AUDIT_HEAD_TAG)

    def _version_problems(self, model: str, mv: Any, logged: VersionRecord) -> list[str]:
        """Checks of one MLflow version against its register row beyond the tags (prompts: the content)."""
        return []

    def _set_state_tag(self, model: str, version: str, state: str) -> None:
        self.client.set_model_version_tag(model, version, STATE_TAG, state)

    def _set_version_tag(self, model: str, version: str, tag: str, value: str) -> None:
        self.client.set_model_version_tag(model, version, tag, value)

    def _set_audit_head(self, model: str, head: str | None) -> None:
        if head is None:
            self.client.delete_registered_model_tag(model, AUDIT_HEAD_TAG)
        else:
            self.client.set_registered_model_tag(model, AUDIT_HEAD_TAG, head)

    # ---- writing (the guarded operations) ----------------------------------------------------------------
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
        """New version, DRAFT until its artifacts are in place, then TRAINED. The register row records the
        artifact's sha256, the feature-graph and dataset hashes and the trainer: loading checks against it."""
        actor = normalize_actor(actor)
        trainer = normalize_actor(tags.get("trained_by", actor))
        try:
            self.client.get_registered_model(model)
        except MlflowException:
            self.client.create_registered_model(model, tags={"managed_by": "mlops_pipelines"})
        mv = self.client.create_model_version(
            model,
            source=source,
            run_id=run_id,
            model_id=model_id,
            tags={**tags, "trained_by": trainer, STATE_TAG: State.DRAFT.value},
        )
        version = str(mv.version)
        details = {
            **{f: tags.get(f) for f in (*REGISTERED_FIELDS, "dataset_hash")},
            "trained_by": trainer,
            "source": source,
            "run_id": run_id,
        }
        self._write(
            model,
            actor,
            [
                Entry(version, "register", None, State.DRAFT, "version created", details=details),
                Entry(version, "transition", State.DRAFT, State.TRAINED, reason),
            ],
            {},
        )
        return self.version(model, version)

    def gate(self, model: str, version: str | int, result: PolicyResult, *, actor: str, reason: str = "") -> str:
        """Apply a policy evaluation: pass -> VALIDATED -> STAGING; fail -> stays (or goes back to) TRAINED.

        A verdict under request overrides needs a ``reason``; every row it writes then carries the overrides, the
        reason and the effective thresholds (``details``; the policy hash covers the overrides)."""
        version, actor = str(version), normalize_actor(actor)
        record = self.record(model)
        if version not in record.versions:
            raise LifecycleError(f"{model} v{version} has no audit history (not registered through the lifecycle)")
        note = ""
        details: dict[str, Any] = {}
        if result.overrides:
            if not reason.strip():
                raise LifecycleError(
                    f"{model} v{version}: policy overrides {result.overrides} need a reason (--reason), which the "
                    "audit log keeps with them"
                )
            overrides = ", ".join(f"{k}={v}" for k, v in result.overrides.items())
            note = f" (overrides {overrides}: {reason.strip()})"
            details = {
                "overrides": result.overrides,
                "override_reason": reason.strip(),
                "thresholds": result.thresholds,
            }
        current = record.versions[version].state
        policy = {"policy_hash": result.policy_hash, "policy_result": result.as_dict(), "details": details}
        if result.passed and current in (State.TRAINED, State.VALIDATED):
            entries = []
            if current == State.TRAINED:
                entries.append(
                    Entry(version, "transition", State.TRAINED, State.VALIDATED, "policy passed" + note, **policy)
                )
            passed = "policy passed: staged, awaiting review and approval for production" + note
            entries.append(Entry(version, "transition", State.VALIDATED, State.STAGING, passed, **policy))
            aliases: dict[str, str | None] = {"staging": version}
            if record.aliases.get("production") not in (None, version):
                aliases["challenger"] = version
            self._write(model, actor, entries, aliases)
        elif not result.passed:
            failed = "promotion policy failed: " + "; ".join(result.failures()) + note
            if current == State.STAGING:
                entry = Entry(version, "transition", State.STAGING, State.TRAINED, failed, **policy)
                self._write(model, actor, [entry], self._aliases_leaving(record, version))
            else:
                self._write(model, actor, [Entry(version, "gate_rejected", current, current, failed, **policy)], {})
        return self.state(model, version)

    @staticmethod
    def _aliases_leaving(record: ModelRecord, version: str) -> dict[str, str | None]:
        return {alias: None for alias, holder in record.aliases.items() if holder == version}

    def approve(self, model: str, version: str | int, *, approver: str, comment: str) -> None:
        """Approve a STAGING version for production: not by its trainer, nor by its compliance reviewer."""
        version, approver = str(version), normalize_actor(approver)
        found = self.require_consistent(model).versions.get(version)
        if found is None:
            raise LifecycleError(f"{model} v{version} has no audit history")
        if approver == found.trainer:
            raise ApprovalRequired(
                f"{model} v{version}: {approver!r} {self.rules.author_verb} this version and cannot approve it"
            )
        if found.review and found.review.get("reviewer") == approver:
            raise ApprovalRequired(
                f"{model} v{version}: {approver!r} signed its compliance review; the approver must be someone else"
            )
        if self.rules.override_excludes_approver and found.overridden_by == approver:
            raise ApprovalRequired(
                f"{model} v{version}: {approver!r} overrode its failed evaluation; the approver must be someone else"
            )
        if found.state != State.STAGING:
            raise LifecycleError(f"{model} v{version} is {found.state}; only STAGING versions are approved")
        self._write(model, approver, [Entry(version, "approval", State.STAGING, State.STAGING, comment)], {})

    def request_review(self, model: str, version: str | int, *, report_uri: str, actor: str) -> None:
        """A new compliance report opens a review (a newer report supersedes an older pending one)."""
        version = str(version)
        state = self.state(model, version)
        entry = Entry(
            version, "review_requested", state, state, "compliance report", details={"report_uri": report_uri}
        )
        self._write(model, normalize_actor(actor), [entry], {})

    def decide_review(
        self, model: str, version: str | int, *, approve: bool, reviewer: str, comment: str
    ) -> ReviewStatus:
        """APPROVED or REJECTED, with a comment, by a reviewer who neither trained nor approved the version."""
        version, reviewer = str(version), normalize_actor(reviewer)
        found = self.require_consistent(model).versions.get(version)
        review = found.review if found else None
        if found is None or review is None or review["status"] != ReviewStatus.PENDING_REVIEW:
            status = review["status"] if review else "no review"
            raise LifecycleError(f"{model} v{version}: nothing pending review ({status})")
        if reviewer == found.trainer:
            raise ApprovalRequired(f"{model} v{version}: {reviewer!r} trained this version and cannot review it")
        if reviewer in {a["approver"] for a in found.stay_approvals()}:
            raise ApprovalRequired(f"{model} v{version}: {reviewer!r} approved this version and cannot also review it")
        if not comment.strip():
            raise LifecycleError("a review decision needs a comment")
        status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
        action = "review_approved" if approve else "review_rejected"
        self._write(model, reviewer, [Entry(version, action, found.state, found.state, comment)], {})
        return status

    def promote_to_production(self, model: str, version: str | int, *, actor: str, reason: str) -> str | None:
        """STAGING -> PRODUCTION with the four-eyes rules; the previous production version moves to STAGING in
        the same operation. Returns the version that left production (the rollback target)."""
        version, actor = str(version), normalize_actor(actor)
        record = self.require_consistent(model)
        found = record.versions.get(version)
        if found is None:
            raise LifecycleError(f"{model} v{version} has no audit history")
        check_transition(model, version, found.state, State.PRODUCTION)
        problem = _four_eyes_problem(found, actor, self.rules)
        if problem:
            given = [a["approver"] for a in found.stay_approvals()]
            raise ApprovalRequired(f"{model} v{version}: {problem}; approvals of this stay: {given}")
        excluded = {found.trainer, actor, found.review["reviewer"] if found.review else None}
        if self.rules.override_excludes_approver:
            excluded.add(found.overridden_by)
        valid = [
            {"approver": a["approver"], "comment": a["comment"]}
            for a in found.stay_approvals()
            if a["approver"] not in excluded
        ]
        previous = record.aliases.get("production")
        entries = []
        aliases: dict[str, str | None] = {**self._aliases_leaving(record, version), "production": version}
        if previous is not None and previous != version:
            entries.append(Entry(previous, "superseded", State.PRODUCTION, State.STAGING, f"superseded by v{version}"))
            aliases["staging"] = previous  # the rollback target stays one step away
        entries.append(Entry(version, "transition", State.STAGING, State.PRODUCTION, reason, approvals=valid))
        self._write(model, actor, entries, aliases)
        return previous

    def rollback(self, model: str, *, actor: str, reason: str) -> str:
        """PRODUCTION -> STAGING for the current version, the version it superseded back to PRODUCTION."""
        actor = normalize_actor(actor)
        record = self.require_consistent(model)
        current = record.aliases.get("production")
        if current is None:
            raise LifecycleError(f"{model}: no production version to roll back")
        target = record.superseded.get(current)
        if target is None:
            raise LifecycleError(f"{model} v{current}: no previous production version to roll back to")
        if record.versions[target].state != State.STAGING:
            raise LifecycleError(f"{model}: rollback target v{target} is {record.versions[target].state}, not STAGING")
        self._write(
            model,
            actor,
            [
                Entry(current, "rollback", State.PRODUCTION, State.STAGING, reason),
                Entry(target, "rollback", State.STAGING, State.PRODUCTION, f"restored by rollback of v{current}"),
            ],
            {"production": target, "staging": current, "challenger": None},
        )
        return target

    def retire(self, model: str, version: str | int, *, actor: str, reason: str) -> None:
        """PRODUCTION -> RETIRED: the version stops serving; every artifact stays in MLflow."""
        version, actor = str(version), normalize_actor(actor)
        record = self.require_consistent(model)
        state = record.versions[version].state if version in record.versions else State.DRAFT.value
        check_transition(model, version, state, State.RETIRED)
        entry = Entry(version, "transition", state, State.RETIRED, reason)
        self._write(model, actor, [entry], self._aliases_leaving(record, version))

    def record_override(self, model: str, version: str | int, *, actor: str, reason: str) -> None:
        """An explicit override (e.g. serving despite a feature-graph mismatch) is itself audited."""
        state = self.state(model, version)
        self._write(model, normalize_actor(actor), [Entry(str(version), "override", state, state, reason)], {})

    def record_traffic(
        self,
        model: str,
        version: str | int,
        *,
        deployment_id: str,
        old: dict[str, Any],
        new: dict[str, Any],
        actor: str,
        reason: str,
    ) -> None:
        """A deployment's traffic configuration changed (shadow, canary share): one audit row with the old and new
        values. It moves no state and no alias; its row moves the audit head, which the serving processes follow."""
        state = self.state(model, version)
        details = {"deployment_id": deployment_id, "old": old, "new": new}
        self._write(
            model, normalize_actor(actor), [Entry(str(version), "traffic", state, state, reason, details=details)], {}
        )

    def resync(self, model: str, *, actor: str, reason: str) -> list[str]:
        """Put MLflow's state tags and aliases back to what the (verified) audit log says, audited; the way out
        of a disagreement that a failed undo or a write behind the lifecycle's back left. Returns what changed."""
        actor = normalize_actor(actor)
        record = self.record(model)
        if record.problems:
            raise InconsistentLifecycle(f"{model}: the audit log itself has problems: " + "; ".join(record.problems))
        changed = []
        for mv in self.versions(model):
            logged = record.versions.get(str(mv.version))
            if logged is None:
                continue
            expected = {STATE_TAG: logged.state, **{f: str(logged.registered.get(f)) for f in self.rules.checked_tags}}
            for tag, value in expected.items():
                if mv.tags.get(tag) != value:
                    self._set_version_tag(model, str(mv.version), tag, value)
                    changed.append(f"v{mv.version} {tag}: {mv.tags.get(tag)} -> {value}")
        aliases = {alias: record.aliases.get(alias) for alias in ALIASES}
        for alias, holder in aliases.items():
            if self.alias_version(model, alias) != holder:
                changed.append(f"alias {alias} -> {holder}")
        if not record.versions:
            raise LifecycleError(f"{model}: nothing in the audit log to resync from")
        newest = record.versions[max(record.versions, key=int)]
        entry = Entry(newest.version, "resync", newest.state, newest.state, reason, details={"changed": changed})
        self._write(model, actor, [entry], aliases)
        return changed

    # ---- the one writer ----------------------------------------------------------------------------------
    def _write(self, model: str, actor: str, entries: list[Entry], aliases: dict[str, str | None]) -> str:
        """Audit rows and MLflow tags/aliases as one operation: the warehouse transaction commits after MLflow has
        been updated, and a failed MLflow call undoes the MLflow changes before it. The alias changes are recorded
        in the last row, so the log alone says which version holds which alias."""
        operation = uuid.uuid4().hex
        if aliases:
            last = entries[-1]
            entries = [*entries[:-1], Entry(**{**last.__dict__, "details": {**last.details, "aliases": aliases}})]
        with warehouse.transaction(self.conn):
            subject = self._subject(model)
            head = audit.append(self.conn, self._key, model=subject, actor=actor, entries=entries, operation=operation)
            undo: list[tuple[str, str, str | None]] = []  # MLflow changes made so far, to take back on failure
            try:
                undo.append(("head", model, self._audit_head(model)))
                self._set_audit_head(model, head)
                for entry in entries:
                    if entry.to_state is not None and entry.to_state != entry.from_state:
                        self._set_state_tag(model, entry.version, entry.to_state)
                        undo.append(("tag", entry.version, entry.from_state))
                for alias, version in aliases.items():
                    undo.append(("alias", alias, self.alias_version(model, alias)))
                    self._point_alias(model, alias, version)
            except BaseException:
                for kind, name, value in reversed(undo):  # best effort; consistency_problems reports the rest
                    with suppress(MlflowException):
                        if kind == "tag" and value is not None:
                            self._set_state_tag(model, name, value)
                        elif kind == "alias":
                            self._point_alias(model, name, value)
                        elif kind == "head":
                            self._set_audit_head(model, value)
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


L = TypeVar("L", bound=Lifecycle)


@contextmanager
def open_lifecycle(
    client: MlflowClient,
    warehouse_path: str | Path,
    audit_key_file: str | Path,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 300.0,
    kind: type[L] = Lifecycle,
) -> Iterator[L]:
    """The one way to build a ``Lifecycle`` (assets, jobs, CLI): the warehouse connection is held until the end
    (for writers it is the cross-process mutex), the audit key read from its file. ``kind``: the governed kind
    (``Lifecycle`` for models, ``PromptLifecycle`` for prompts)."""
    with warehouse.connect(warehouse_path, read_only=read_only, lock_timeout_s=lock_timeout_s) as conn:
        yield kind(client, conn, audit.load_key(Path(audit_key_file), conn))
