"""Bearer tokens of the serving API: who calls a write endpoint, and in which role.

A token is ``mlops_<id>_<secret>``: ``id`` finds the row, ``secret`` (32 random bytes) is checked against the
sha256 stored there with a constant-time comparison. The token itself is shown once, when it is created, and
never stored: a copy of the file gives no usable token. Revoking keeps the row (who had it, when it ended).

Roles: ``viewer`` (reads), ``operator`` (promotions, rollbacks, deployments, overrides), ``reviewer``
(compliance sign-offs), ``approver`` (four-eyes approvals). The actor of the token is the identity the
lifecycle's four-eyes rules compare, never a name in a request body.
"""

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.governance.lifecycle import normalize_actor

ROLES = ("viewer", "operator", "reviewer", "approver")
_PREFIX = "mlops_"
_SCHEMA = """CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY, actor TEXT NOT NULL, role TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL, revoked_at TEXT)"""


class InvalidToken(MlopsError, PermissionError):
    """A bearer token that is missing, malformed, unknown, wrong or revoked (HTTP 401)."""


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    actor: str
    role: str
    created_at: str
    revoked_at: str | None


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute(_SCHEMA)
    return conn


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(path: Path, *, actor: str, role: str) -> tuple[TokenInfo, str]:
    """A new token for ``actor`` in ``role``; returns its record and the token text (shown once, not stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    actor = normalize_actor(actor)
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    created = datetime.now(UTC).isoformat()
    conn = _connect(path)
    try:
        conn.execute(
            "INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?, NULL)", (token_id, actor, role, _digest(secret), created)
        )
    finally:
        conn.close()
    path.chmod(0o600)
    return TokenInfo(token_id, actor, role, created, None), f"{_PREFIX}{token_id}_{secret}"


def revoke(path: Path, token_id: str) -> TokenInfo:
    """End a token now (idempotent); ``NotFound`` naming the id when there is no such token."""
    conn = _connect(path)
    try:
        conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
            (datetime.now(UTC).isoformat(), token_id),
        )
    finally:
        conn.close()
    found = [t for t in list_tokens(path) if t.token_id == token_id]
    if not found:
        raise NotFound(f"no API token with id {token_id!r} in {path} (`mlops tokens list` shows them)")
    return found[0]


def list_tokens(path: Path) -> list[TokenInfo]:
    """Every token ever created (active and revoked), oldest first; never the secrets."""
    if not path.exists():
        return []
    conn = _connect(path)
    try:
        rows = conn.execute(
            "SELECT token_id, actor, role, created_at, revoked_at FROM api_tokens ORDER BY created_at"
        ).fetchall()
    finally:
        conn.close()
    return [TokenInfo(*row) for row in rows]


def authenticate(path: Path, token: str) -> TokenInfo:
    """The record of a valid, unrevoked token; ``InvalidToken`` otherwise (the message never echoes the secret)."""
    body = token.removeprefix(_PREFIX) if token.startswith(_PREFIX) else None
    token_id, _, secret = (body or "").partition("_")
    if not token_id or not secret:
        raise InvalidToken("malformed bearer token: expected mlops_<id>_<secret> from `mlops tokens create`")
    row = None
    if path.exists():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(
                "SELECT token_id, actor, role, created_at, revoked_at, secret_sha256 FROM api_tokens "
                "WHERE token_id = ?",
                (token_id,),
            ).fetchone()
        except sqlite3.OperationalError:  # no table yet: no token was ever created
            row = None
        finally:
            conn.close()
    # compare even when the id is unknown, so the time taken does not tell whether an id exists
    expected = row[5] if row else _digest(secrets.token_urlsafe(32))
    if not hmac.compare_digest(_digest(secret), expected) or row is None:
        raise InvalidToken(f"bearer token {token_id} is not valid")
    if row[4] is not None:
        raise InvalidToken(f"bearer token {token_id} was revoked at {row[4]}")
    return TokenInfo(*row[:5])
