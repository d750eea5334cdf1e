"""The serving API: predictions from the governed versions, their status, and the management routes.

``create_app(settings)`` builds it from the same settings as the CLI and the Dagster resources (MLflow URIs,
warehouse, audit key, online store). Reads need no token; write routes need a bearer token of the right role
(``mlops tokens create``), whose actor is the identity the four-eyes rules compare.
"""

import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mlops_pipelines.lib.core.errors import ConfigError, NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.online_store import OnlineStore, OnlineStoreReader
from mlops_pipelines.lib.governance import tokens
from mlops_pipelines.lib.governance.deployments import to_canary
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, open_lifecycle
from mlops_pipelines.lib.governance.model_loading import FeatureGraphMismatch
from mlops_pipelines.lib.monitoring.drift_status import read_status
from mlops_pipelines.lib.monitoring.served_predictions import (
    ROLE_CANARY,
    ROLE_SERVE,
    ROLE_SHADOW,
    SHADOW_SUFFIX,
    PredictionLogWriter,
    Served,
)
from mlops_pipelines.serving import management, problems
from mlops_pipelines.serving.auth import check_token, require
from mlops_pipelines.serving.deployments import router as deployments_router
from mlops_pipelines.serving.model_cache import ModelCache, Route, Servable, Unservable
from mlops_pipelines.serving.problems import ProblemError
from mlops_pipelines.serving.prompts import prompt_routes
from mlops_pipelines.serving.schemas import (
    AliasStatus,
    Prediction,
    PredictRequest,
    PredictResponse,
    Problem,
    PromoteRequest,
    PromoteResponse,
    StatusResponse,
    VersionInfo,
    VersionsResponse,
)
from mlops_pipelines.serving.shadow import ShadowScorer
from mlops_pipelines.settings import Settings

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": problems.TITLES[code]} for code in (401, 403, 404, 409, 422, 503)
}
# The predict route reads its body itself (see ``predict``); this is what it documents.
PREDICT_OPENAPI = {
    "parameters": [{"name": "authorization", "in": "header", "required": False, "schema": {"type": "string"}}],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    },
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # how the online store writes times: ISO strings that sort as times


class Serving:
    """The process's state: settings, stores, the model cache and the prediction log."""

    def __init__(self, settings: Settings, catalog: FeatureCatalog, models: list[str]) -> None:
        self.settings, self.catalog = settings, catalog
        self.tracking = Tracking(
            settings.mlflow_tracking_uri, settings.mlflow_registry_uri, settings.mlflow_artifact_root
        )
        self.cache = ModelCache(
            models=models,
            tracking=self.tracking,
            open_lifecycle=lambda: self.lifecycle(read_only=True),
            catalog=catalog,
            capacity=settings.serve_cache_versions,
            refresh_s=settings.serve_refresh_s,
        )
        self._reader: OnlineStore | None = None
        self.log: PredictionLogWriter | None = None
        self.shadow: ShadowScorer | None = None  # the challenger's shadow scoring, off the response path
        self._ttl = {name: view.ttl for name, view in catalog.views.items()}
        self._latest: tuple[float, str | None] = (0.0, None)
        self._warehouse_lock = threading.Lock()

    @contextmanager
    def lifecycle(self, *, read_only: bool, kind: type[Lifecycle] = Lifecycle) -> Iterator[Lifecycle]:
        """The lifecycle as the CLI and the Dagster resources open it (``open_lifecycle``; ``kind``: the governed
        kind, models or prompts). One at a time in this process: DuckDB refuses a read-only and a read-write
        connection to one file in the same process."""
        with (
            self._warehouse_lock,
            open_lifecycle(
                self.tracking.client(),
                self.settings.warehouse_path,
                self.settings.audit_key_file,
                read_only=read_only,
                lock_timeout_s=30.0,
                kind=kind,
            ) as opened,
        ):
            yield opened

    def reader(self) -> OnlineStore:
        if self._reader is None:
            self._reader = self.settings.online_store().reader()
        return self._reader

    def freshness_clock(self) -> datetime:
        """The time feature freshness is judged at (MLOPS_SERVE_AS_OF): now, a fixed time, or the newest feature
        time in the online store (``latest``, for replaying stored data), looked up at most once a second."""
        as_of = self.settings.serve_as_of
        if not as_of:
            return datetime.now(UTC)
        if as_of != "latest":
            parsed = datetime.fromisoformat(as_of)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
        checked, latest = self._latest
        if latest is None or time.monotonic() - checked > 1.0:
            reader = self.reader()
            if not isinstance(reader, OnlineStoreReader):
                raise ConfigError(
                    "MLOPS_SERVE_AS_OF=latest replays the embedded online store (MLOPS_ONLINE_STORE=sqlite)"
                )
            latest = reader.newest_event_time(list(self.catalog.views)) or ""
            self._latest = (time.monotonic(), latest)
        return datetime.fromisoformat(latest) if latest else datetime.now(UTC)

    def oldest_allowed(self, view: str, clock: datetime) -> str | None:
        ttl = self._ttl.get(view)
        return None if ttl is None else (clock - ttl).strftime(_TIME_FORMAT)


def create_app(
    settings: Settings, *, catalog: FeatureCatalog | None = None, models: list[str] | None = None
) -> FastAPI:
    """The API over the stores ``settings`` names; ``catalog`` and ``models`` default to the project's catalog and
    MLOPS_SERVE_MODELS (else every model spec)."""
    if catalog is None:
        from mlops_pipelines.catalog.feature_views import load_catalog

        catalog = load_catalog(settings.bar_clock)
    if models is None:
        from mlops_pipelines.catalog.models import MODEL_SPECS

        models = list(settings.serve_models or MODEL_SPECS)
    serving = Serving(settings, catalog, models)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        serving.log = PredictionLogWriter(settings.prediction_log_dir)
        serving.shadow = ShadowScorer(serving.log)
        serving.cache.start()  # warm-up: /readyz turns ready once every served alias is loaded
        try:
            yield
        finally:
            serving.cache.stop()
            serving.shadow.stop()
            serving.log.close()

    app = FastAPI(
        title="mlops_pipelines serving API",
        description="Predictions from governed model versions, their status, and governed management.",
        version="1",
        lifespan=lifespan,
    )
    app.state.serving = serving

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = FastAPI.openapi(app)["components"]
            schemas = {**components["schemas"], "PredictRequest": PredictRequest.model_json_schema()}
            components["schemas"] = dict(sorted(schemas.items()))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    problems.install(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: ERRORS[503]})
    async def readyz() -> JSONResponse:
        """Ready when every served model's aliases are loaded (or refused for a stated reason) and the online
        store is readable."""
        ready, waiting = serving.cache.ready()
        try:
            serving.reader().snapshot_id()
        except Exception as exc:
            ready, waiting = False, [*waiting, f"online store: {exc}"]
        if not ready:
            body = ProblemError(503, "not ready: " + "; ".join(waiting), check="readiness").body()
            return JSONResponse(body, status_code=503, media_type="application/problem+json")
        loaded = {m: serving.cache.loaded_versions(m) for m in serving.cache.models}
        return JSONResponse({"status": "ready", "loaded": loaded})

    @app.post(
        "/api/v1/models/{model}/predict",
        response_model=PredictResponse,
        tags=["inference"],
        responses={c: ERRORS[c] for c in (404, 409, 422, 503)},
        openapi_extra=PREDICT_OPENAPI,
    )
    async def predict(model: str, raw: Request) -> Response:
        """One prediction per symbol (features from the online store) or per supplied row, from the version
        holding ``alias`` (default production) or the given ``version``; the whole request by one version, except
        a production deployment's canary share of symbols, which the challenger answers (each prediction says its
        version and role). With the deployment's shadow on, the challenger also scores the request, off the
        response path (logged with role ``shadow``)."""
        started = time.perf_counter()
        # The hot path parses and validates in one pass of pydantic-core, and answers with bytes it serialized
        # (FastAPI's body parameter and response model would each add a round trip through Python objects).
        try:
            request = PredictRequest.model_validate_json(await raw.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        items = request.symbols if request.symbols is not None else request.rows
        assert items is not None
        limit = settings.serve_max_items
        if len(items) > limit:
            source = "symbols" if request.symbols is not None else "rows"
            raise ProblemError(
                422, f"{len(items)} {source} in one call; the limit is {limit}", field=source, check="max_items"
            )
        if not items:
            raise ProblemError(422, "nothing to predict: the list is empty", check="min_items")
        alias = None if request.version else (request.alias or "production")
        route = Route(None)
        if request.version:
            held = await run_in_threadpool(serving.cache.by_version, model, request.version)
        else:
            assert alias is not None
            route = serving.cache.route(model, alias)
            held = route.held
            if held is None:
                raise ProblemError(503, f"no version of {model} holds the alias {alias!r}", check="alias")
        if isinstance(held, Unservable):
            if request.override_reason is None or not isinstance(held.error, FeatureGraphMismatch):
                raise conflict(held)
            token = check_token(settings.serve_tokens_file, raw.headers.get("authorization"), ("operator",))
            held = await run_in_threadpool(overridden, model, held.version, token, request.override_reason)
        symbols: list[str | None] = list(request.symbols) if request.symbols is not None else [None] * len(items)
        answered_by = [held] * len(items)
        vectors: dict[str, dict[str, Any] | None] = {}
        clock = None
        if request.symbols is not None:
            vectors = serving.reader().lookup(request.symbols)  # one snapshot for every version that scores
            clock = serving.freshness_clock()
            canary = route.challenger if route.traffic.canary_share > 0 else None
            if canary is not None:
                answered_by = [
                    canary if to_canary(model, s, route.traffic.canary_share) else held for s in request.symbols
                ]
            values = np.empty(len(items))
            as_of: list[str | None] = [None] * len(items)
            view_times: list[dict[str, str | None] | None] = [None] * len(items)
            for version in (held, canary) if canary is not None else (held,):
                positions = [i for i, by in enumerate(answered_by) if by is version]
                if not positions:
                    continue
                matrix, found_as_of, found_times = features_of_symbols(
                    version, request.symbols, vectors, clock, positions
                )
                values[positions] = version.predict(matrix)
                for j, i in enumerate(positions):
                    as_of[i], view_times[i] = found_as_of[j], found_times[j]
        else:
            matrix, as_of, view_times = features_of_rows(held, request.rows or [])
            values = held.predict(matrix)
        request_id = uuid.uuid4().hex
        answered = datetime.now(UTC).isoformat()
        latency_ms = (time.perf_counter() - started) * 1000
        roles = [ROLE_SERVE if by is held else ROLE_CANARY for by in answered_by]
        assert serving.log is not None
        serving.log.append(
            Served(
                request_id,
                i,
                model,
                by.version,
                alias if by is held else "challenger",
                roles[i],
                symbol,
                as_of[i],
                float(value),
                latency_ms,
                answered,
            )
            for i, (symbol, value, by) in enumerate(zip(symbols, values, answered_by, strict=True))
        )
        if route.challenger is not None and route.traffic.shadow and serving.shadow is not None:
            champion_items = [i for i, by in enumerate(answered_by) if by is held]
            if champion_items:
                serving.shadow.submit(
                    partial(shadow_entries, route.challenger, request_id, request, vectors, clock, champion_items)
                )
        answer = PredictResponse(
            request_id=request_id,
            model=model,
            version=held.version,
            alias=alias,
            feature_graph_hash=held.loaded.feature_graph_hash,
            predictions=[
                Prediction(
                    symbol=symbol,
                    row=None if symbol is not None else i,
                    prediction=float(value),
                    features_as_of=as_of[i],
                    view_times=view_times[i],
                    version=by.version,
                    role=roles[i],
                )
                for i, (symbol, value, by) in enumerate(zip(symbols, values, answered_by, strict=True))
            ],
        )
        return Response(answer.model_dump_json(), media_type="application/json")

    def shadow_entries(
        challenger: Servable,
        request_id: str,
        request: PredictRequest,
        vectors: dict[str, dict[str, Any] | None],
        clock: datetime | None,
        positions: list[int],
    ) -> list[Served]:
        """The challenger's predictions of the items the champion answered (run by the shadow worker): the same
        online-store snapshot and freshness clock as the response, or the same supplied rows."""
        started = time.perf_counter()
        if request.symbols is not None:
            assert clock is not None
            matrix, as_of, _ = features_of_symbols(challenger, request.symbols, vectors, clock, positions)
        else:
            rows = request.rows or []
            matrix, as_of, _ = features_of_rows(challenger, [rows[i] for i in positions])
        values = challenger.predict(matrix)
        latency_ms = (time.perf_counter() - started) * 1000
        answered = datetime.now(UTC).isoformat()
        return [
            Served(
                request_id + SHADOW_SUFFIX,
                i,
                challenger.model,
                challenger.version,
                "challenger",
                ROLE_SHADOW,
                request.symbols[i] if request.symbols is not None else None,
                as_of[j],
                float(value),
                latency_ms,
                answered,
            )
            for j, (i, value) in enumerate(zip(positions, values, strict=True))
        ]

    def overridden(model: str, version: str, token: tokens.TokenInfo, reason: str) -> Servable:
        with serving.lifecycle(read_only=False) as lifecycle:
            return serving.cache.overridden(
                lifecycle, model, version, actor=token.actor, reason=f"{reason} (API token {token.token_id})"
            )

    def conflict(held: Unservable) -> ProblemError:
        found = problems.from_error(held.error)
        if found.status == 409:
            found.extra = {**(found.extra or {}), "views": held.views}
        return found

    def features_of_symbols(
        held: Servable,
        symbols: list[str],
        vectors: dict[str, dict[str, Any] | None],
        clock: datetime,
        positions: list[int] | None = None,
    ) -> tuple[np.ndarray, list[str | None], list[dict[str, str | None] | None]]:
        """The feature matrix of ``symbols`` (those at ``positions``, default all) for ``held``, from one online
        store lookup (``vectors``); 404 for a symbol with no features, 503 for one older than a view's TTL."""
        views = sorted(set(held.feature_views.values()))
        oldest = {view: serving.oldest_allowed(view, clock) for view in views}
        as_of: list[str | None] = []
        times: list[dict[str, str | None] | None] = []
        found: list[dict[str, Any]] = []
        for i in range(len(symbols)) if positions is None else positions:
            symbol = symbols[i]
            vector = vectors.get(symbol)
            if vector is None:
                raise ProblemError(404, f"symbol {symbol!r} has no features in the online store", field=f"symbols[{i}]")
            seen = {view: vector.get(f"{view}__event_ts") for view in views}
            for view, event_time in seen.items():
                if event_time is None or (oldest[view] is not None and event_time < str(oldest[view])):
                    raise ProblemError(
                        503,
                        f"symbol {symbol!r}: online features of view {view!r} are from {event_time or 'never'}, "
                        f"older than its TTL ({serving._ttl[view]}) at {clock.isoformat()}; refusing to answer "
                        "from stale features",
                        field=f"symbols[{i}]",
                        check="feature_freshness",
                        extra={"symbol": symbol, "view": view, "event_time": event_time},
                    )
            as_of.append(min(t for t in seen.values() if t is not None))
            times.append(seen)
            found.append(vector)
        matrix = np.array([[_number(vector[f]) for f in held.features] for vector in found], dtype=float)
        return matrix, as_of, times

    def features_of_rows(
        held: Servable, rows: list[dict[str, Any]]
    ) -> tuple[np.ndarray, list[str | None], list[dict[str, str | None] | None]]:
        wanted = held.features
        expected = set(wanted)
        for i, row in enumerate(rows):
            unknown = sorted(set(row) - expected)
            if unknown:
                raise ProblemError(
                    422,
                    f"rows[{i}]: unknown feature(s) {unknown} for {held.model} v{held.version}",
                    field=f"rows[{i}].{unknown[0]}",
                    check="unknown_feature",
                )
            missing = [f for f in wanted if f not in row]
            if missing:
                raise ProblemError(
                    422,
                    f"rows[{i}]: missing feature(s) {missing}; every feature of the model is required",
                    field=f"rows[{i}].{missing[0]}",
                    check="missing_feature",
                )
            for name in wanted:
                value = row[name]
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise ProblemError(
                        422,
                        f"rows[{i}].{name}: expected a number or null, got {type(value).__name__} {value!r}",
                        field=f"rows[{i}].{name}",
                        check="feature_type",
                    )
        matrix = np.array([[_number(row[f]) for f in wanted] for row in rows], dtype=float)
        return matrix, [None] * len(rows), [None] * len(rows)

    @app.get(
        "/api/v1/models/{model}/status",
        response_model=StatusResponse,
        tags=["inference"],
        responses={c: ERRORS[c] for c in (404, 422)},
    )
    async def status(model: str) -> StatusResponse:
        """The versions holding production / staging / challenger, their lifecycle states, whether this process
        has them loaded, their latest monitoring verdicts, and whether their graph hash matches the catalog."""
        state = serving.cache.state(model)
        loaded = serving.cache.loaded_versions(model)
        monitored = read_status(settings.data_dir / "monitoring" / "drift_status.json").get(model, {})
        rows = []
        for alias, held in sorted(state.aliases.items()):
            graph = (
                held.loaded.feature_graph_hash if isinstance(held, Servable) else getattr(held.error, "recorded", None)
            )
            rows.append(
                AliasStatus(
                    alias=alias,
                    version=held.version,
                    state=state.states.get(held.version),
                    loaded=held.version in loaded,
                    refused=str(held.error) if isinstance(held, Unservable) else None,
                    feature_graph_hash=graph,
                    graph_matches_catalog=None if graph is None else graph == serving.cache.live_graph_hash,
                    monitoring={
                        signal: entry
                        for signal, entry in monitored.items()
                        if str(entry.get("version", held.version)) == held.version
                    }
                    or None,
                )
            )
        shadow = serving.shadow.counts if serving.shadow is not None else None
        challenger = state.aliases.get("challenger")
        traffic = {
            "deployment_id": state.deployment_id,
            **state.traffic.as_dict(),
            "challenger": None if challenger is None else challenger.version,
            "shadow_jobs": None if shadow is None else dict(shadow.__dict__),
        }
        return StatusResponse(
            model=model,
            traffic=traffic,
            aliases=rows,
            loaded_versions=loaded,
            live_feature_graph_hash=serving.cache.live_graph_hash,
            following_error=state.last_error,
        )

    @app.get(
        "/api/v1/models/{model}/versions",
        response_model=VersionsResponse,
        tags=["inference"],
        responses={c: ERRORS[c] for c in (404, 422)},
    )
    def versions(model: str) -> VersionsResponse:
        """Every registered version: state, headline metrics, hashes, trainer, created time, aliases."""
        state = serving.cache.state(model)
        client = serving.tracking.client()
        if not state.registered:
            raise NotFound(f"no model {model!r} is registered yet")
        registered = client.get_registered_model(model)
        by_version: dict[str, list[str]] = {}
        for alias, version in registered.aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        found = []
        quoted = model.replace("'", "''")
        for mv in sorted(client.search_model_versions(f"name = '{quoted}'"), key=lambda v: int(v.version)):
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            found.append(
                VersionInfo(
                    version=str(mv.version),
                    state=state.states.get(str(mv.version), mv.tags.get("lifecycle_state", "")),
                    aliases=sorted(by_version.get(str(mv.version), [])),
                    metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},
                    feature_graph_hash=mv.tags.get("feature_graph_hash"),
                    dataset_hash=mv.tags.get("dataset_hash"),
                    artifact_sha256=mv.tags.get("artifact_sha256"),
                    trained_by=mv.tags.get("trained_by"),
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat()
                    if mv.creation_timestamp
                    else None,
                )
            )
        return VersionsResponse(model=model, versions=found)

    @app.post(
        "/api/v1/ml/{model}/promote",
        response_model=PromoteResponse,
        tags=["management"],
        responses={c: ERRORS[c] for c in (401, 403, 404, 409, 422)},
    )
    def promote(
        model: str, body: PromoteRequest, token: Annotated[tokens.TokenInfo, Depends(require("operator"))]
    ) -> PromoteResponse:
        """Run the promotion gate (to staging, with per-request threshold overrides merged request > model >
        strategy > default) or promote to production (four-eyes: the token's actor is the requester), through
        the same code path as ``mlops models promote``."""
        from mlops_pipelines.catalog.models import load_model_specs
        from mlops_pipelines.catalog.policies import load_drift_policy_file, load_promotion_policy
        from mlops_pipelines.lib.governance.gate import request_promotion

        serving.cache.state(model)
        with serving.lifecycle(read_only=False) as lifecycle:
            if body.version not in lifecycle.record(model).versions:
                raise NotFound(f"{model} has no version {body.version!r} on record")
            outcome = request_promotion(
                lifecycle,
                model,
                body.version,
                to=body.to,
                actor=token.actor,
                reason=body.reason or "",
                via=f"the API (token {token.token_id})",
                spec=load_model_specs().get(model),
                catalog=serving.catalog,
                promotion_policy=load_promotion_policy(),
                drift_policy=load_drift_policy_file(),
                request=body.overrides or None,
            )
        result = outcome.result
        return PromoteResponse(
            model=model,
            version=body.version,
            state=outcome.state,
            actor=token.actor,
            passed=None if result is None else result.passed,
            checks=[] if result is None else [dict(c.__dict__) for c in result.checks],
            previous_production=outcome.previous_production,
        )

    app.include_router(management.router(serving, require))
    app.include_router(prompt_routes(serving, require))
    app.include_router(deployments_router)
    return app


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def run(settings: Settings) -> None:
    """Serve on MLOPS_SERVE_HOST:MLOPS_SERVE_PORT with uvicorn (one process; `mlops serve`)."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.serve_host,
        port=settings.serve_port,
        log_level="warning",
        access_log=False,  # the prediction log records every answer; a line per request costs the hot path
    )
