"""The prompt routes of the serving API (``/api/v1/prompts``): the library's registered versions, rendering, and
their governed lifecycle through the same code as ``mlops prompts`` (``lib/prompts/lifecycle.py``).

Reads and rendering need no token. Creating a version and promoting need an operator's token, approving an
approver's; the token's actor is the identity the four-eyes rule compares. Creating a version always writes a new
version (the next number); an existing version is never edited.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from mlops_pipelines.catalog.prompt_evaluation import load_prompt_cases, load_prompt_policy_file
from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance import tokens
from mlops_pipelines.lib.governance.lifecycle import Lifecycle
from mlops_pipelines.lib.prompts.evaluation_results import evaluations, latest_evaluation
from mlops_pipelines.lib.prompts.evaluation_run import run_evaluation
from mlops_pipelines.lib.prompts.library import NAME_PATTERN, ModelSettings, OutputSpec, parse_prompt, render
from mlops_pipelines.lib.prompts.lifecycle import PromptLifecycle, request_promotion
from mlops_pipelines.serving import problems
from mlops_pipelines.serving.problems import ProblemError
from mlops_pipelines.serving.schemas import Problem
from mlops_pipelines.settings import Settings


class _Serving(Protocol):
    settings: Settings
    catalog: FeatureCatalog
    tracking: Tracking

    def lifecycle(self, *, read_only: bool, kind: type[Lifecycle] = Lifecycle) -> AbstractContextManager[Lifecycle]: ...


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": problems.TITLES[code]} for code in (401, 403, 404, 409, 422)
}


class PromptSummary(BaseModel):
    name: str
    versions: int
    production: str | None
    staging: str | None
    states: dict[str, str] = Field(description="version -> lifecycle state, from the verified audit log.")
    governance: list[str] = Field(description="Consistency problems of its governance record (empty: all is well).")


class PromptVersionInfo(BaseModel):
    version: str
    state: str | None
    aliases: list[str]
    author: str | None
    content_sha256: str | None
    evaluation: str | None = Field(description="Its latest evaluation: passed, failed, or null (never evaluated).")
    created_at: str | None


class PromptEvaluationResponse(BaseModel):
    name: str
    version: str
    evaluation_id: str
    passed: bool
    scores: dict[str, float] = Field(description="Aggregate per scorer (see docs/prompt_evaluation.md).")
    failures: list[str] = Field(description="One line per broken threshold, naming the case and the scorer.")
    source: str = Field(description="Where the answers came from: recorded:<file> or http:<endpoint>.")
    context_matches_warehouse: str | None = Field(
        description="Recorded answers to market data: how many cases' contexts equal this warehouse's features."
    )
    requested_by: str


class PromptDetail(BaseModel):
    name: str
    aliases: dict[str, str]
    latest: dict[str, Any] = Field(description="The newest version's spec: template, variables, settings, metadata.")
    versions: list[PromptVersionInfo]
    governance: list[str]


class PromptVersionDetail(BaseModel):
    name: str
    version: str
    state: str
    spec: dict[str, Any]
    content_sha256: str
    approvals: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]


class NewPromptVersion(BaseModel):
    """A new version's content and metadata (the prompt's name is in the path; the number is assigned)."""

    model_config = ConfigDict(extra="forbid")

    owner: str
    purpose: str
    intended_use: str
    risk_tier: str = Field(pattern="^(low|medium|high)$")
    variables: dict[str, str]
    template: str
    model: ModelSettings
    evaluation_set: str = Field(pattern=NAME_PATTERN)
    tags: dict[str, str] = Field(default_factory=dict)
    output: OutputSpec = Field(default_factory=OutputSpec)
    reason: str = Field(default="", description="Why (the commit message in MLflow; recorded in the audit log).")


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(description="Every declared variable, nothing else: name -> text or number.")
    version: str | None = Field(default=None, pattern=r"^[0-9]+$", description="A version number.")
    alias: str | None = Field(default=None, description="production (default), staging or challenger.")


class RenderResponse(BaseModel):
    name: str
    version: str
    text: str
    model: dict[str, Any] = Field(description="The model settings the text is meant for.")


class PromptPromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[0-9]+$")
    to: str = Field(default="staging", pattern=r"^(staging|production)$")
    reason: str = ""
    override_reason: str = Field(
        default="", description="Stage a version whose latest evaluation failed anyway, and why (audited)."
    )


class PromptApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[0-9]+$")
    comment: str = Field(min_length=1)


class PromptLifecycleResponse(BaseModel):
    name: str
    version: str
    state: str
    actor: str


def prompt_routes(serving: _Serving, require: Callable[..., Callable[..., tokens.TokenInfo]]) -> APIRouter:
    """The router ``create_app`` includes; ``require(role)`` is its bearer-token dependency."""
    router = APIRouter(prefix="/api/v1/prompts", tags=["prompts"])

    @contextmanager
    def prompts(*, read_only: bool) -> Iterator[PromptLifecycle]:
        with serving.lifecycle(read_only=read_only, kind=PromptLifecycle) as lifecycle:
            assert isinstance(lifecycle, PromptLifecycle)
            yield lifecycle

    def known(lifecycle: PromptLifecycle, name: str, version: str | None = None) -> None:
        if name not in lifecycle.models():
            raise NotFound(f"no registered prompt {name!r}")
        if version is not None and version not in lifecycle.record(name).versions:
            raise NotFound(f"prompt {name!r} has no version {version!r} on record")

    def version_rows(lifecycle: PromptLifecycle, name: str) -> list[PromptVersionInfo]:
        record = lifecycle.record(name)
        aliases: dict[str, list[str]] = {}
        for alias, holder in record.aliases.items():
            aliases.setdefault(holder, []).append(alias)
        rows = []
        for pv in lifecycle.versions(name):
            number = str(pv.version)
            found = latest_evaluation(lifecycle.conn, name, number)
            rows.append(
                PromptVersionInfo(
                    version=number,
                    state=record.versions[number].state if number in record.versions else None,
                    aliases=sorted(aliases.get(number, [])),
                    author=pv.tags.get("authored_by"),
                    content_sha256=pv.tags.get("content_sha256"),
                    evaluation=None if found is None else ("passed" if found.passed else "failed"),
                    created_at=datetime.fromtimestamp(pv.creation_timestamp / 1000, UTC).isoformat()
                    if pv.creation_timestamp
                    else None,
                )
            )
        return rows

    @router.get("", response_model=list[PromptSummary])
    def list_prompts() -> list[PromptSummary]:
        """Every registered prompt: its versions' states and aliases, and whether its governance record holds."""
        with prompts(read_only=True) as lifecycle:
            out = []
            for name in lifecycle.models():
                record, problems_found = lifecycle.verify(name)
                out.append(
                    PromptSummary(
                        name=name,
                        versions=len(record.versions),
                        production=record.aliases.get("production"),
                        staging=record.aliases.get("staging"),
                        states={v: r.state for v, r in sorted(record.versions.items(), key=lambda i: int(i[0]))},
                        governance=problems_found,
                    )
                )
            return out

    @router.get("/{name}", response_model=PromptDetail, responses={404: ERRORS[404]})
    def prompt_detail(name: str) -> PromptDetail:
        """One prompt: aliases, the newest version's spec, every version."""
        with prompts(read_only=True) as lifecycle:
            known(lifecycle, name)
            rows = version_rows(lifecycle, name)
            latest = lifecycle.prompt(name, rows[-1].version).model_dump(mode="json") if rows else {}
            record, problems_found = lifecycle.verify(name)
            return PromptDetail(
                name=name, aliases=record.aliases, latest=latest, versions=rows, governance=problems_found
            )

    @router.get("/{name}/versions", response_model=list[PromptVersionInfo], responses={404: ERRORS[404]})
    def prompt_versions(name: str) -> list[PromptVersionInfo]:
        """Every registered version: state, aliases, author, content hash, latest evaluation, created time."""
        with prompts(read_only=True) as lifecycle:
            known(lifecycle, name)
            return version_rows(lifecycle, name)

    @router.get("/{name}/versions/{version}", response_model=PromptVersionDetail, responses={404: ERRORS[404]})
    def prompt_version(name: str, version: str) -> PromptVersionDetail:
        """One version: its spec as registered, approvals and every evaluation."""
        with prompts(read_only=True) as lifecycle:
            known(lifecycle, name, version)
            prompt = lifecycle.prompt(name, version)
            return PromptVersionDetail(
                name=name,
                version=version,
                state=lifecycle.state(name, version),
                spec=prompt.model_dump(mode="json"),
                content_sha256=prompt.content_hash(),
                approvals=lifecycle.approvals(name, version),
                evaluations=[
                    {**e.__dict__, "evaluated_at": e.evaluated_at.isoformat()}
                    for e in evaluations(lifecycle.conn, name, version)
                ],
            )

    @router.post(
        "/{name}/versions",
        response_model=PromptVersionInfo,
        status_code=201,
        responses={c: ERRORS[c] for c in (401, 403, 409, 422)},
    )
    def create_version(
        name: str, body: NewPromptVersion, token: Annotated[tokens.TokenInfo, Depends(require("operator"))]
    ) -> PromptVersionInfo:
        """Register a new version (DRAFT, the next number; the token's actor is its author). Never edits an
        existing version. The template must use exactly the declared variables (422 naming the variable)."""
        spec = {**body.model_dump(mode="json", exclude={"reason"}), "name": name}
        parse_prompt({**spec, "version": 1}, where="request body")  # name, template and variables, before any lookup
        with prompts(read_only=False) as lifecycle:
            prompt = parse_prompt({**spec, "version": len(lifecycle.versions(name)) + 1}, where="request body")
            reason = body.reason or f"created via the API (token {token.token_id})"
            version, _ = lifecycle.register_version(prompt, actor=token.actor, reason=reason)
            return next(row for row in version_rows(lifecycle, name) if row.version == version)

    @router.post("/{name}/render", response_model=RenderResponse, responses={c: ERRORS[c] for c in (404, 422)})
    def render_prompt(name: str, body: RenderRequest) -> RenderResponse:
        """The text of a version (by number, or the one holding ``alias``, default production) with the given
        variables: every declared variable is required and no other is accepted (422 naming it)."""
        if body.version is not None and body.alias is not None:
            raise ProblemError(422, "give 'version' or 'alias', not both", check="request_body")
        with prompts(read_only=True) as lifecycle:
            known(lifecycle, name)
            version = body.version or lifecycle.record(name).aliases.get(body.alias or "production")
            if version is None:
                raise NotFound(f"no version of prompt {name!r} holds the alias {body.alias or 'production'!r}")
            known(lifecycle, name, version)
            prompt = lifecycle.prompt(name, version)
        return RenderResponse(
            name=name, version=version, text=render(prompt, body.variables), model=prompt.model.model_dump()
        )

    @router.post(
        "/{name}/versions/{version}/evaluate",
        response_model=PromptEvaluationResponse,
        responses={c: ERRORS[c] for c in (401, 403, 404)},
    )
    def evaluate_prompt(
        name: str, version: str, token: Annotated[tokens.TokenInfo, Depends(require("operator"))]
    ) -> PromptEvaluationResponse:
        """Evaluate a registered version as ``mlops prompts evaluate`` and the evaluation asset do (the configured
        response source, catalog/prompt_policy.yaml) and record the verdict that promotion judges on. A failed
        evaluation is a 200 with ``passed: false``: the verdict is the answer."""
        with prompts(read_only=False) as lifecycle:
            known(lifecycle, name, version)
            run = run_evaluation(
                lifecycle.prompt(name, version),
                load_prompt_cases(name),
                serving.settings.response_source(),
                load_prompt_policy_file(),
                conn=lifecycle.conn,
                views=list(serving.catalog.views.values()),
                tracking=serving.tracking,
            )
        evaluation, provenance = run.evaluation, run.provenance
        return PromptEvaluationResponse(
            name=name,
            version=version,
            evaluation_id=evaluation.evaluation_id,
            passed=evaluation.passed,
            scores=evaluation.scores,
            failures=evaluation.failures,
            source=evaluation.source,
            context_matches_warehouse=(
                None if provenance is None else f"{provenance.matching} of {provenance.checked} cases"
            ),
            requested_by=token.actor,
        )

    @router.post(
        "/{name}/promote",
        response_model=PromptLifecycleResponse,
        responses={c: ERRORS[c] for c in (401, 403, 404, 409, 422)},
    )
    def promote_prompt(
        name: str, body: PromptPromoteRequest, token: Annotated[tokens.TokenInfo, Depends(require("operator"))]
    ) -> PromptLifecycleResponse:
        """To staging: judged on its latest evaluation (a failed or missing one: 409, the version stays where it
        is; ``override_reason`` stages it anyway, audited). To production: four eyes (the token's actor is the
        requester; 403 when the only approval is the requester's or the author's)."""
        with prompts(read_only=False) as lifecycle:
            known(lifecycle, name, body.version)
            state = request_promotion(
                lifecycle,
                name,
                body.version,
                to=body.to,
                actor=token.actor,
                reason=body.reason,
                via=f"the API (token {token.token_id})",
                override_reason=body.override_reason,
            )
            last = lifecycle.history(name)[-1]
        if body.to == "staging" and state != "STAGING":
            raise ProblemError(409, f"{name} v{body.version} stays {state}: {last['reason']}", check="evaluation")
        return PromptLifecycleResponse(name=name, version=body.version, state=state, actor=token.actor)

    @router.post(
        "/{name}/approve",
        response_model=PromptLifecycleResponse,
        responses={c: ERRORS[c] for c in (401, 403, 404, 409, 422)},
    )
    def approve_prompt(
        name: str, body: PromptApproveRequest, token: Annotated[tokens.TokenInfo, Depends(require("approver"))]
    ) -> PromptLifecycleResponse:
        """Approve a STAGING version for production (403 for its author or whoever overrode its evaluation)."""
        with prompts(read_only=False) as lifecycle:
            known(lifecycle, name, body.version)
            lifecycle.approve(name, body.version, approver=token.actor, comment=body.comment)
            state = lifecycle.state(name, body.version)
        return PromptLifecycleResponse(name=name, version=body.version, state=state, actor=token.actor)

    return router
