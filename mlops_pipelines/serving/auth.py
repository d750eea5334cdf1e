"""Who calls a write route: ``require(*roles)``, a FastAPI dependency that reads the bearer token (``mlops tokens
create``) and answers 401 (missing, malformed, wrong or revoked token) or 403 (another role). The returned token's
actor is the identity the four-eyes rules and the audit log use, never a name in the request body."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Header, Request

from mlops_pipelines.lib.governance import tokens
from mlops_pipelines.serving.problems import ProblemError


def check_token(tokens_file: Path, authorization: str | None, roles: tuple[str, ...]) -> tokens.TokenInfo:
    """The token in an ``Authorization: Bearer`` header, if valid and of one of ``roles``; else 401 or 403."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            401, "this route needs 'Authorization: Bearer <token>' (mlops tokens create)", check="bearer_token"
        )
    info = tokens.authenticate(tokens_file, token.strip())
    if info.role not in roles:
        raise ProblemError(
            403,
            f"token {info.token_id} of {info.actor!r} has role {info.role!r}; this route needs "
            + " or ".join(repr(r) for r in roles),
            check="role",
        )
    return info


def require(*roles: str) -> Callable[..., tokens.TokenInfo]:
    """A dependency admitting a valid token of one of ``roles`` (the tokens file of the app's settings), for the
    routes of modules that have no ``settings`` at hand (their ``APIRouter`` is included by ``create_app``)."""

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> tokens.TokenInfo:
        return check_token(request.app.state.serving.settings.serve_tokens_file, authorization, roles)

    return check
