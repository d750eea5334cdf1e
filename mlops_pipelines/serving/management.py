"""The management routes: what the lifecycle CLI commands show (version detail, training sets, experiments), an
on-demand backtest, and the reviewer's and approver's decisions.

Every answer comes from the same function the matching ``mlops`` command prints (``lib/governance/model_detail.py``,
``lib/training/dataset_detail.py``, ``lib/training/experiments.py``, ``lib/governance/backtests.py``,
``Lifecycle.approve`` and ``compliance.decide_review``), so the CLI and the API cannot disagree. Reads need no token;
the backtest needs an operator's, the decisions a reviewer's or an approver's, and the four-eyes rules compare the
token's actor, never a name in the body.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import duckdb
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_pipelines.lib.core.errors import NotFound
from mlops_pipelines.lib.governance import compliance, tokens
from mlops_pipelines.lib.governance.backtests import EmptyWindow, WindowTooLong, backtest_window
from mlops_pipelines.lib.governance.model_detail import require_model, require_version, version_detail
from mlops_pipelines.lib.training.dataset_detail import dataset_detail, dataset_rows
from mlops_pipelines.lib.training.experiments import experiment_detail
from mlops_pipelines.serving import problems
from mlops_pipelines.serving.problems import ProblemError
from mlops_pipelines.serving.schemas import Problem

if TYPE_CHECKING:
    from mlops_pipelines.serving.app import Serving

Require = Callable[..., Callable[..., tokens.TokenInfo]]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem, "description": problems.TITLES[code]} for code in codes}


# ---- bodies ----------------------------------------------------------------------------------------------------
class VersionDetail(BaseModel):
    """One model version whole, as ``mlops models show MODEL --version V --json`` prints it."""

    model: str
    version: str
    state: str | None
    aliases: str = Field(description="Its MLflow aliases, comma-separated ('' for none).")
    created: str | None
    tags: dict[str, str]
    approvals: list[dict[str, Any]] = Field(description="Every approval: approver, comment, time.")
    compliance_review: dict[str, Any] | None = Field(description="The latest compliance review, if any.")
    history: list[dict[str, Any]] = Field(description="The version's rows of the audit log, oldest first.")
    deployments: list[dict[str, Any]] = Field(description="Its deployments, newest first, with their checklists.")
    governance_problems: list[str] = Field(description="Why the model is refused for serving (empty: none).")
    lineage: dict[str, Any] = Field(description="Dataset, feature views and versions, graph hash, run, git commit.")
    metrics: dict[str, Any] | None
    manifest: dict[str, Any] = Field(description="The training manifest (without its metrics and config).")


class DatasetSummary(BaseModel):
    """A stored training set, as ``mlops datasets list --json`` prints it."""

    dataset_id: str = Field(description="The first 12 hex digits of the content hash.")
    dataset_hash: str
    model: str
    table_name: str
    row_count: int
    train_rows: int
    validation_rows: int
    test_rows: int
    first_decision: str | None
    last_decision: str | None
    created_at: str | None
    training_cutoff: str | None
    min_history_days: float | None
    features: list[str] | None
    feature_views: dict[str, int] | None = Field(description="Feature view -> the version its features came from.")
    label: dict[str, Any] | None
    dagster_run_id: str | None


class TrainedVersion(BaseModel):
    model: str
    version: str
    state: str | None
    mlflow_run_id: str | None
    created: str | None


class DatasetDetail(DatasetSummary):
    """A stored training set and the model versions trained on it (``mlops datasets show ID``)."""

    model_versions: list[TrainedVersion]


class ExperimentRun(BaseModel):
    run_id: str
    run_name: str | None
    status: str
    started: str | None
    ended: str | None
    dagster_run_id: str | None
    dataset_id: str
    metrics: dict[str, float | None]
    params: dict[str, str]
    tags: dict[str, str]
    link: str = Field(description="The run in the MLflow UI (MLOPS_MLFLOW_UI_URL).")


class ExperimentDetail(BaseModel):
    """An MLflow experiment and its runs, newest first (``mlops experiments show NAME --json`` prints the runs)."""

    name: str
    experiment_id: str
    artifact_location: str
    lifecycle_stage: str
    link: str
    runs: list[ExperimentRun]


class BacktestRequest(BaseModel):
    """Replay a version on one scenario of catalog/scenarios.yaml, or on an explicit window ``[start, end)``."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, pattern=r"^[0-9]+$", description="Default: the newest version.")
    scenario: str | None = Field(default=None, description="A scenario name of catalog/scenarios.yaml.")
    start: datetime | None = Field(default=None, description="Window start (inclusive; UTC when no offset).")
    end: datetime | None = Field(default=None, description="Window end (exclusive; UTC when no offset).")

    @model_validator(mode="after")
    def _one_window(self) -> "BacktestRequest":
        explicit = self.start is not None or self.end is not None
        if (self.scenario is None) == (not explicit):
            raise ValueError("give either 'scenario' or both 'start' and 'end'")
        if explicit:
            if self.start is None or self.end is None:
                raise ValueError("an explicit window needs both 'start' and 'end'")
            self.start, self.end = (t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in (self.start, self.end))
            if self.start >= self.end:
                raise ValueError(f"start {self.start.isoformat()} is not before end {self.end.isoformat()}")
        return self


class BacktestResponse(BaseModel):
    backtest_id: str
    model: str
    version: str
    scenario: str | None
    start: str
    end: str
    bars: int
    in_sample: bool | None = Field(
        description="The window overlaps the version's training data (null: its training set is not stored)."
    )
    training_data_ends: str | None
    cost_bps: float
    champion_version: str | None = Field(description="The production version replayed alongside, if any.")
    champion_skipped: str | None
    metrics: dict[str, dict[str, float | None]] = Field(description="strategy -> metric -> value, after costs.")
    mlflow_run_id: str = Field(description="The version's training run, where the equity curves are logged.")
    equity_png_uri: str = Field(description="Artifact URI of the equity-curve PNG.")
    equity_png_url: str = Field(description="The PNG in the MLflow UI.")


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", description="What was checked.")


class ApproveResponse(BaseModel):
    model: str
    version: str
    approver: str = Field(description="The token's actor.")
    state: str
    approvals: list[dict[str, Any]] = Field(description="The approvals that count (given in this stay in STAGING).")


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approved", "rejected"]
    comment: str = Field(pattern=r"\S", description="Required: what was reviewed, or why it is rejected.")


class ReviewResponse(BaseModel):
    model: str
    version: str
    status: str = Field(description="APPROVED or REJECTED.")
    reviewer: str = Field(description="The token's actor.")
    report_warning: str | None = Field(
        description="Set when the decision is recorded but the report in MLflow could not be updated."
    )


# ---- routes ----------------------------------------------------------------------------------------------------
def router(serving: "Serving", require: Require) -> APIRouter:
    """The management routes over ``serving``'s stores; ``require(role, ...)`` is the app's bearer-token check."""
    routes = APIRouter(tags=["management"])
    settings = serving.settings

    @contextmanager
    def warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
        with serving.lifecycle(read_only=True) as lifecycle:
            yield lifecycle.conn

    @routes.get(
        "/api/v1/ml/lifecycle/models/{model_name}/{version}", response_model=VersionDetail, responses=_errors(404)
    )
    def model_version(model_name: str, version: str) -> dict[str, Any]:
        """A version's manifest, lineage, tags, lifecycle history from the audit log, approvals, compliance
        review and deployments: what ``mlops models show MODEL --version V --json`` prints."""
        with serving.lifecycle(read_only=True) as lifecycle:
            return version_detail(lifecycle, serving.tracking, model_name, version)

    @routes.get("/api/v1/features/datasets", response_model=list[DatasetSummary])
    def datasets() -> list[dict[str, Any]]:
        """Every stored training set, newest first: hash, row counts per split, decision range, feature views and
        their versions (``mlops datasets list --json``)."""
        with warehouse() as conn:
            return dataset_rows(conn)

    @routes.get("/api/v1/features/datasets/{dataset_id}", response_model=DatasetDetail, responses=_errors(404))
    def dataset(dataset_id: str) -> dict[str, Any]:
        """One training set and the model versions trained on it (``mlops datasets show ID``)."""
        with warehouse() as conn:
            return dataset_detail(conn, serving.tracking.client(), dataset_id)

    @routes.get("/api/v1/ml/lifecycle/experiments/{name}", response_model=ExperimentDetail, responses=_errors(404))
    def experiment(name: str) -> dict[str, Any]:
        """An experiment's runs, newest first, with metrics, params, tags and links to the MLflow UI
        (``mlops experiments show NAME --json`` prints the runs)."""
        return experiment_detail(serving.tracking.client(), settings.mlflow_ui_url, name)

    @routes.post(
        "/api/v1/ml/{model}/backtest", response_model=BacktestResponse, responses=_errors(401, 403, 404, 409, 422)
    )
    def backtest(
        model: str, body: BacktestRequest, token: Annotated[tokens.TokenInfo, Depends(require("operator"))]
    ) -> dict[str, Any]:
        """Replay a version (default: the newest) on a scenario of catalog/scenarios.yaml or on an explicit
        window, against buy-and-hold, the naive baseline and the production champion, after costs; synchronous,
        so windows longer than MLOPS_SERVE_BACKTEST_MAX_DAYS are refused (422 naming the limit). The equity
        curves are logged into the version's training run; nothing the promotion gate reads changes."""
        from mlops_pipelines.catalog.models import load_model_specs
        from mlops_pipelines.catalog.policies import load_scenario_catalog

        specs = load_model_specs()
        spec = specs.get(model)
        if spec is None:
            raise NotFound(f"no model spec {model!r} to replay; models with a spec: {', '.join(specs)}")
        with serving.lifecycle(read_only=True) as lifecycle:
            require_model(lifecycle, model)
            if body.version is not None:
                require_version(lifecycle, model, body.version)
            try:
                return backtest_window(
                    lifecycle,
                    serving.tracking,
                    spec,
                    serving.catalog,
                    load_scenario_catalog(),
                    body.version,
                    scenario=body.scenario,
                    start=body.start,
                    end=body.end,
                    max_days=settings.serve_backtest_max_days,
                    ui_url=settings.mlflow_ui_url,
                )
            except WindowTooLong as exc:
                raise ProblemError(
                    422, str(exc), field=exc.field, check="max_window", extra={"days": exc.days, "limit": exc.limit}
                ) from exc
            except EmptyWindow as exc:
                raise ProblemError(422, str(exc), field="scenario" if body.scenario else "start", check="bars") from exc

    @routes.post(
        "/api/v1/ml/{model}/versions/{version}/approve",
        response_model=ApproveResponse,
        responses=_errors(401, 403, 404, 409, 422),
    )
    def approve(
        model: str,
        version: str,
        body: ApproveRequest,
        token: Annotated[tokens.TokenInfo, Depends(require("approver"))],
    ) -> ApproveResponse:
        """Approve a STAGING version for production as the token's actor (``mlops models approve``): refused
        with 403 when that actor trained the version or signed its compliance review, 409 when it is not in
        STAGING."""
        with serving.lifecycle(read_only=False) as lifecycle:
            require_version(lifecycle, model, version)
            lifecycle.approve(model, version, approver=token.actor, comment=body.comment)
            return ApproveResponse(
                model=model,
                version=version,
                approver=token.actor,
                state=lifecycle.state(model, version),
                approvals=lifecycle.approvals(model, version, current_stay=True),
            )

    @routes.post(
        "/api/v1/ml/{model}/versions/{version}/review",
        response_model=ReviewResponse,
        responses=_errors(401, 403, 404, 409, 422),
    )
    def review(
        model: str,
        version: str,
        body: ReviewRequest,
        token: Annotated[tokens.TokenInfo, Depends(require("reviewer"))],
    ) -> ReviewResponse:
        """Sign off (``approved``) or reject the pending compliance review as the token's actor (``mlops reviews
        approve|reject``): 403 when that actor trained or approved the version, 409 when nothing is pending."""
        with serving.lifecycle(read_only=False) as lifecycle:
            require_version(lifecycle, model, version)
            status, lagging = compliance.decide_review(
                lifecycle,
                serving.tracking,
                model,
                version,
                approve=body.decision == "approved",
                reviewer=token.actor,
                comment=body.comment,
            )
        return ReviewResponse(
            model=model, version=version, status=str(status), reviewer=token.actor, report_warning=lagging
        )

    return routes
