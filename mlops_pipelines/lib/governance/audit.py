"""The governance audit log: one append-only, HMAC-chained table that is the record of every model's lifecycle.

``governance.model_audit_log`` holds every state change, approval, compliance-review step and override. It is
the source of truth: MLflow's version tags and aliases are a projection of it that ``Lifecycle`` keeps in step
and verifies. This module owns the table (its DDL, the only INSERT, every read) and its integrity:

- Each row carries ``row_hash = HMAC-SHA256(key, previous row's hash + this row's content)``. A row edited,
  inserted or deleted by a direct write to the warehouse, or appended with a NULL or made-up hash, fails
  verification, because computing a valid hash needs the key, which lives outside the warehouse (a file readable
  only by the platform's user, ``MLOPS_AUDIT_KEY_FILE``; in production a mounted secret).
- Verification checks each row against the stored hash of the row before it, so a tampered row is reported
  where it is, and rows after it still verify: one model's tampering does not hide or taint another's history.
- Each model's newest row (``seq:hash``) is also kept in MLflow (``AUDIT_HEAD_TAG``), so cutting rows off the
  end of the table shows too.

Whoever holds the key and runs the platform's code can write valid rows: the chain detects writes that bypass
the code, not a compromised platform account.
"""

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.errors import MlopsError

AUDIT_TABLE = "governance.model_audit_log"
AUDIT_HEAD_TAG = "audit_head"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEY_BYTES = 32

_DDL = f"""
CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
    seq BIGINT PRIMARY KEY, operation_id VARCHAR NOT NULL, occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
    actor VARCHAR NOT NULL, model VARCHAR NOT NULL, version VARCHAR NOT NULL, action VARCHAR NOT NULL,
    from_state VARCHAR, to_state VARCHAR, reason VARCHAR, policy_hash VARCHAR, policy_result VARCHAR,
    approvals VARCHAR, details VARCHAR, row_hash VARCHAR NOT NULL
)"""
# The columns each row's hash covers, in order (occurred_at as integer microseconds: exact and portable).
_CHAINED = (
    "seq, operation_id, epoch_us(occurred_at), actor, model, version, action, from_state, to_state, reason, "
    "policy_hash, policy_result, approvals, details"
)


class AuditKeyError(MlopsError, RuntimeError):
    """The audit key is missing or unreadable while the log it signed exists."""


@dataclass(frozen=True)
class Entry:
    """One row to append (the log assigns seq, operation, time and hash)."""

    version: str
    action: str
    from_state: str | None
    to_state: str | None
    reason: str
    policy_hash: str | None = None
    policy_result: dict[str, Any] | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One stored row, parsed; ``verified`` is False when its hash does not follow from the chain."""

    seq: int
    operation_id: str
    occurred_at: datetime
    actor: str
    model: str
    version: str
    action: str
    from_state: str | None
    to_state: str | None
    reason: str
    policy_hash: str | None
    policy_result: dict[str, Any] | None
    approvals: list[dict[str, Any]]
    details: dict[str, Any]
    row_hash: str | None
    verified: bool
    problem: str | None = None


def load_key(path: Path, conn: duckdb.DuckDBPyConnection) -> bytes:
    """The HMAC key of the audit log. Created (mode 0600) only while the log is empty: a missing key for an
    existing log is an error, because a new key would make every row fail verification."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        rows = row_count(conn)
        if rows:
            raise AuditKeyError(
                f"audit key {path} is missing but {AUDIT_TABLE} has {rows} rows signed with it: restore the key "
                "file (MLOPS_AUDIT_KEY_FILE); a new key would make the whole log fail verification. (A log written "
                "by a version of the platform from before keyed chaining has no key: start from a clean data dir.)"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            text = path.read_text().strip()
        else:
            text = os.urandom(KEY_BYTES).hex()
            with os.fdopen(fd, "w") as handle:
                handle.write(text + "\n")
    except OSError as exc:
        raise AuditKeyError(f"audit key {path} cannot be read: {exc}") from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise AuditKeyError(f"audit key {path} must hold at least {KEY_BYTES} random bytes as hex")
    return key


def ensure_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(_DDL)


def exists(conn: duckdb.DuckDBPyConnection) -> bool:
    return warehouse.table_exists(conn, AUDIT_TABLE)


def row_count(conn: duckdb.DuckDBPyConnection) -> int:
    return warehouse.row_count(conn, AUDIT_TABLE) if exists(conn) else 0


def row_hash(key: bytes, previous: str, values: tuple[Any, ...]) -> str:
    """The hash of one row (its ``_CHAINED`` values, in order) after the row whose hash is ``previous``."""
    return hmac.new(key, json.dumps([previous, *values], default=str).encode(), hashlib.sha256).hexdigest()


def append(
    conn: duckdb.DuckDBPyConnection, key: bytes, *, model: str, actor: str, entries: list[Entry], operation: str
) -> str:
    """Append ``entries`` as one operation; the caller holds the transaction. Returns ``seq:hash`` of the last."""
    ensure_table(conn)
    now_us = (datetime.now(UTC) - EPOCH) // timedelta(microseconds=1)
    last = conn.execute(f"SELECT seq, row_hash FROM {AUDIT_TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    seq, head = (int(last[0]), str(last[1] or "")) if last else (0, "")
    for entry in entries:
        seq += 1
        values = (
            seq,
            operation,
            now_us,
            actor,
            model,
            entry.version,
            entry.action,
            entry.from_state,
            entry.to_state,
            entry.reason,
            entry.policy_hash,
            _json(entry.policy_result) if entry.policy_result is not None else None,
            _json(entry.approvals),
            _json(entry.details),
        )
        head = row_hash(key, head, values)
        conn.execute(
            f"INSERT INTO {AUDIT_TABLE} VALUES (?, ?, make_timestamptz(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*values, head],
        )
    return f"{seq}:{head}"


def has_sequence_gaps(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether rows were cut out of the log (its seq numbers are not 1..n)."""
    if not exists(conn):
        return False
    seqs = [r[0] for r in conn.execute(f"SELECT seq FROM {AUDIT_TABLE} ORDER BY seq").fetchall()]
    return seqs != list(range(1, len(seqs) + 1))


def read(conn: duckdb.DuckDBPyConnection, key: bytes) -> list[Row]:
    """Every row in seq order, each verified against the stored hash of the row before it."""
    if not exists(conn):
        return []
    records = conn.execute(f"SELECT {_CHAINED}, row_hash, occurred_at FROM {AUDIT_TABLE} ORDER BY seq").fetchall()
    rows: list[Row] = []
    previous = ""
    for record in records:
        values, stored, occurred_at = tuple(record[:-2]), record[-2], record[-1]
        problem = None
        if stored is None:
            problem = f"audit row {values[0]} has no hash (written outside the lifecycle)"
        elif not hmac.compare_digest(row_hash(key, previous, values), str(stored)):
            problem = f"audit row {values[0]} was changed, or a row before it removed"
        rows.append(_row(values, occurred_at, stored, problem))
        previous = str(stored or "")
    return rows


def _row(values: tuple[Any, ...], occurred_at: datetime, stored: str | None, problem: str | None) -> Row:
    (seq, operation, _, actor, model, version, action, from_state, to_state, reason, policy_hash, policy, approvals,
     details) = values  # fmt: skip
    return Row(
        seq=int(seq),
        operation_id=str(operation),
        occurred_at=occurred_at,
        actor=str(actor),
        model=str(model),
        version=str(version),
        action=str(action),
        from_state=from_state,
        to_state=to_state,
        reason=reason or "",
        policy_hash=policy_hash,
        policy_result=_parse(policy, None),
        approvals=_parse(approvals, []),
        details=_parse(details, {}),
        row_hash=stored,
        verified=problem is None,
        problem=problem,
    )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _parse(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default
