"""The deployments routes: list, create (the deployment checklist, as ``mlops deployments create``), show, and the
traffic a production deployment shares with the challenger (shadow, canary share), as ``mlops deployments
traffic``. Writes need an operator's bearer token; its actor is the one recorded."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.governance import deployments, tokens
from mlops_pipelines.serving import problems
from mlops_pipelines.serving.auth import require
from mlops_pipelines.serving.problems import ProblemError
from mlops_pipelines.serving.schemas import Problem

router = APIRouter(prefix="/api/v1/ml/lifecycle/deployments", tags=["management"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": problems.TITLES[code]} for code in (401, 403, 404, 409, 422)
}


class DeploymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="Registered model name.")
    version: str = Field(pattern=r"^[0-9]+$", description="The version to deploy.")
    environment: str = Field(default="production", pattern=r"^(staging|production)$")


class ChecklistItem(BaseModel):
    name: str
    passed: bool
    detail: str


class Traffic(BaseModel):
    shadow: bool = Field(description="The challenger also scores every request, off the response path.")
    canary_share: float = Field(description="Share of symbols (0 to 1) the challenger answers, sticky per symbol.")


class Deployment(BaseModel):
    """A recorded deployment, its checklist, and (production) the traffic it shares with the challenger."""

    deployment_id: str
    model: str
    version: str
    environment: str
    status: str = Field(description="ready (every checklist item passed) or blocked.")
    checklist: list[ChecklistItem]
    created_by: str
    created_at: str
    traffic: Traffic
    active: bool = Field(
        description="Serving follows this deployment's traffic: the newest ready production deployment of the "
        "version holding the production alias."
    )


class DeploymentsResponse(BaseModel):
    deployments: list[Deployment]


class TrafficRequest(BaseModel):
    """What to change (at least one of ``shadow`` and ``canary_share``; the other stays), and why."""

    model_config = ConfigDict(extra="forbid")

    shadow: StrictBool | None = Field(default=None, description="true or false.")
    canary_share: StrictFloat | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="A number from 0 to 1."
    )
    reason: str = Field(default="", description="Why (recorded in the audit log).")

    @model_validator(mode="after")
    def _something(self) -> "TrafficRequest":
        if self.shadow is None and self.canary_share is None:
            raise ValueError("give 'shadow', 'canary_share' or both")
        return self


class TrafficResponse(BaseModel):
    deployment_id: str
    model: str
    version: str
    actor: str
    old: Traffic
    new: Traffic


def _deployment(row: dict[str, Any]) -> Deployment:
    return Deployment.model_validate(
        {**row, "checklist": json.loads(row["checklist"]), "created_at": row["created_at"].isoformat()}
    )


@router.get("", response_model=DeploymentsResponse, responses={422: ERRORS[422]})
def list_deployments(request: Request, model: str | None = None) -> DeploymentsResponse:
    """Every recorded deployment (of ``model``), newest first, as ``mlops deployments list``, with its traffic."""
    with request.app.state.serving.lifecycle(read_only=True) as lifecycle:
        rows = deployments.with_traffic(lifecycle, deployments.list_deployments(lifecycle.conn, model))
    return DeploymentsResponse(deployments=[_deployment(r) for r in rows])


@router.post(
    "",
    response_model=Deployment,
    status_code=201,
    responses={c: ERRORS[c] for c in (401, 403, 404, 409, 422)},
)
def create_deployment(
    request: Request,
    body: DeploymentRequest,
    token: Annotated[tokens.TokenInfo, Depends(require("operator"))],
) -> Deployment:
    """Run the deployment checklist (approvals, compliance review, policy, drift, rollback target) and record the
    deployment, as ``mlops deployments create``; the actor is the token's. A failed item records the deployment
    as blocked and answers 409 listing the failed items."""
    with request.app.state.serving.lifecycle(read_only=False) as lifecycle:
        if body.version not in lifecycle.record(body.model).versions:
            raise NotFound(f"{body.model} has no version {body.version!r} on record")
        record = deployments.create_deployment(lifecycle, body.model, body.version, body.environment, actor=token.actor)
        (found,) = deployments.with_traffic(lifecycle, [record])
    created = _deployment(found)
    failed = [item for item in created.checklist if not item.passed]
    if failed:
        raise ProblemError(
            409,
            f"deployment {created.deployment_id} of {body.model} v{body.version} to {body.environment} is blocked: "
            + "; ".join(f"{item.name}: {item.detail}" for item in failed),
            check="deployment_checklist",
            extra={"deployment_id": created.deployment_id, "failed": [item.model_dump() for item in failed]},
        )
    return created


@router.get("/{deployment_id}", response_model=Deployment, responses={c: ERRORS[c] for c in (404, 422)})
def show_deployment(request: Request, deployment_id: str) -> Deployment:
    """One deployment with its checklist and traffic, as ``mlops deployments show``."""
    with request.app.state.serving.lifecycle(read_only=True) as lifecycle:
        found = deployments.deployment_record(lifecycle.conn, deployment_id)
        if found is None:
            raise NotFound(f"no deployment {deployment_id!r}; GET /api/v1/ml/lifecycle/deployments lists them")
        (found,) = deployments.with_traffic(lifecycle, [found])
    return _deployment(found)


@router.put(
    "/{deployment_id}/traffic",
    response_model=TrafficResponse,
    responses={c: ERRORS[c] for c in (401, 403, 404, 409, 422)},
)
def set_traffic(
    request: Request,
    deployment_id: str,
    body: TrafficRequest,
    token: Annotated[tokens.TokenInfo, Depends(require("operator"))],
) -> TrafficResponse:
    """Change a ready production deployment's shadow and canary share, as ``mlops deployments traffic``: one
    audit row (the token's actor, old and new values, reason). Serving processes follow it within their refresh
    interval."""
    with request.app.state.serving.lifecycle(read_only=False) as lifecycle:
        old, new = deployments.set_traffic(
            lifecycle,
            deployment_id,
            shadow=body.shadow,
            canary_share=body.canary_share,
            actor=token.actor,
            reason=f"{body.reason} (API token {token.token_id})" if body.reason else f"API token {token.token_id}",
        )
        found = deployments.deployment_record(lifecycle.conn, deployment_id)
    assert found is not None
    return TrafficResponse(
        deployment_id=deployment_id,
        model=found["model"],
        version=found["version"],
        actor=token.actor,
        old=Traffic.model_validate(old.as_dict()),
        new=Traffic.model_validate(new.as_dict()),
    )
