"""Errors of the serving API as JSON problem documents (RFC 9457): ``type``, ``title``, ``status``, ``detail``, plus
the ``field`` or ``check`` that failed. Every route answers its errors through here."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException
from starlette.exceptions import HTTPException

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.governance.lifecycle import ApprovalRequired, IllegalTransition, LifecycleError
from mlops_pipelines.lib.governance.model_loading import FeatureGraphMismatch
from mlops_pipelines.lib.governance.tokens import InvalidToken
from mlops_pipelines.serving.model_cache import NotReady

TITLES = {
    400: "Bad request",
    405: "Method not allowed",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Unprocessable content",
    502: "Bad gateway",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """Raised by a route: answered as a problem document with this status."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        check: str | None = None,
        extra: dict[str, Any] | None = None,
        type_: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.check, self.extra = status, detail, field, check, extra
        self.type = (
            type_
            or f"https://mlops-pipelines.dev/problems/{check or TITLES.get(status, 'error')}".replace(" ", "-").lower()
        )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        for name in ("field", "check", "extra"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


def from_error(exc: Exception) -> ProblemError:
    """The problem for one of the project's errors (the mapping of every route)."""
    if isinstance(exc, ProblemError):
        return exc
    if isinstance(exc, FeatureGraphMismatch):
        return ProblemError(
            409,
            str(exc),
            check="feature_graph_hash",
            extra={"version": exc.version, "trained_hash": exc.recorded, "live_hash": exc.live},
        )
    if isinstance(exc, NotReady):
        return ProblemError(503, str(exc), check="warm_up")
    if isinstance(exc, InvalidToken):
        return ProblemError(401, str(exc), check="bearer_token")
    if isinstance(exc, ApprovalRequired):
        return ProblemError(403, str(exc), check="four_eyes")
    if isinstance(exc, IllegalTransition):
        return ProblemError(409, str(exc), check="lifecycle_transition")
    if isinstance(exc, NotFound):
        return ProblemError(404, str(exc))
    if isinstance(exc, LifecycleError):
        return ProblemError(409, str(exc), check="lifecycle")
    if isinstance(exc, MlflowException):
        return ProblemError(502, f"MLflow: {exc.message}", check="mlflow")
    if isinstance(exc, MlopsError | ValueError):
        return ProblemError(422, str(exc))
    raise exc


def install(app: FastAPI) -> None:
    """Answer validation errors, ``ProblemError`` and the project's errors as problem documents."""

    async def problem(_: Request, exc: Exception) -> JSONResponse:
        found = from_error(exc)
        return JSONResponse(found.body(), status_code=found.status, media_type="application/problem+json")

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        body = ProblemError(422, detail or "malformed request", field=where or None, check="request_body").body()
        return JSONResponse(body, status_code=422, media_type="application/problem+json")

    async def routing(_: Request, exc: Exception) -> JSONResponse:  # no such route or method: a problem too
        assert isinstance(exc, HTTPException)
        body = ProblemError(exc.status_code, str(exc.detail), check="route").body()
        return JSONResponse(body, status_code=exc.status_code, media_type="application/problem+json")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, routing)
    for kind in (ProblemError, MlopsError, MlflowException, ValueError):
        app.add_exception_handler(kind, problem)
