"""The serving process's loaded models, and how it follows alias moves without a restart.

Every version is loaded once, through ``load_for_inference`` (governance record verified, feature-graph hash
checked against the live catalog, artifact sha256 checked, probed in a child process), and kept: the versions
holding a served alias always, up to ``capacity`` others (asked for by number) least recently used first out.

A background thread looks at the registry every ``refresh_s`` seconds. MLflow keeps, per model, the aliases and
the newest audit row's ``seq:hash`` (``AUDIT_HEAD_TAG``); reading them is one cheap query that never touches the
warehouse. When they changed, the thread opens the lifecycle read-only, verifies the model's record, loads the
versions that now hold an alias, and only then replaces the model's alias table in one assignment. A request
reads that table once, so it is answered entirely by one version; a request that starts after the assignment
never sees the old version. A failure (the warehouse locked by a pipeline run, an inconsistent record) leaves
the current table serving and is retried at the next look.

The same rebuild reads the traffic of the model's active production deployment (``deployments.serving_traffic``:
shadow, canary share, from the verified audit log). A traffic change is an audit row, so it moves the audit head
and is followed within ``refresh_s`` like an alias move; so is a new ready production deployment, which MLflow
marks (``DEPLOYMENT_TAG``) as it does the audit head. Every alias holder is loaded, the ``challenger`` too, so
shadow and canary need no other load. ``route`` answers, from one read of the table, who answers a request: the
alias holder, and the challenger with the traffic it gets when the alias is ``production``.
"""

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.governance.audit import AUDIT_HEAD_TAG
from mlops_pipelines.lib.governance.deployments import DEPLOYMENT_TAG, Traffic, serving_traffic
from mlops_pipelines.lib.governance.lifecycle import ALIASES, Lifecycle
from mlops_pipelines.lib.governance.model_loading import FeatureGraphMismatch, LoadedModel, load_for_inference

log = logging.getLogger(__name__)


class NotReady(MlopsError, RuntimeError):
    """The process has not loaded a model's aliases yet (warming up, or the warehouse is locked): HTTP 503."""


@dataclass(frozen=True)
class Servable:
    """A loaded version, ready to score: its features in the model's order and the view each comes from."""

    model: str
    version: str
    loaded: LoadedModel
    feature_views: dict[str, str]  # feature -> view name in the live catalog
    best_iteration: int | None

    @property
    def features(self) -> list[str]:
        return self.loaded.features

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.loaded.booster.predict(matrix, num_iteration=self.best_iteration, num_threads=1), dtype=float
        )


@dataclass(frozen=True)
class Unservable:
    """A version holding an alias that this process refuses to serve, and why (HTTP 409 for a graph mismatch)."""

    model: str
    version: str
    error: MlopsError
    views: list[dict[str, Any]] | None = None  # feature views whose version differs: trained vs live


@dataclass
class ModelState:
    """What the process knows of one model: its alias table and the registry marker it was built from."""

    aliases: dict[str, Servable | Unservable] = field(default_factory=dict)
    marker: tuple[Any, ...] | None = None
    registered: bool = False
    last_error: str | None = None
    states: dict[str, str] = field(default_factory=dict)  # version -> lifecycle state, from the verified log
    deployment_id: str | None = None  # the active production deployment, whose traffic this is
    traffic: Traffic = field(default_factory=Traffic)


@dataclass(frozen=True)
class Route:
    """Who answers one request: ``held`` (the alias holder), and for ``production`` with shadow or canary on, the
    ``challenger`` and the ``traffic`` it gets (off otherwise)."""

    held: "Servable | Unservable | None"
    challenger: "Servable | None" = None
    traffic: Traffic = field(default_factory=Traffic)
    deployment_id: str | None = None


class ModelCache:
    """Loaded versions and alias tables of the served models; ``start`` begins following the registry."""

    def __init__(
        self,
        *,
        models: list[str],
        tracking: Tracking,
        open_lifecycle: Callable[[], AbstractContextManager[Lifecycle]],
        catalog: FeatureCatalog,
        capacity: int = 8,
        refresh_s: float = 1.0,
    ) -> None:
        self.models = list(models)
        self.tracking, self._open_lifecycle, self.catalog = tracking, open_lifecycle, catalog
        self.live_graph_hash = catalog.graph_hash()
        self.capacity, self.refresh_s = capacity, refresh_s
        self._feature_view = {f: name for name, view in catalog.views.items() for f in view.features}
        self._states: dict[str, ModelState] = {m: ModelState() for m in self.models}
        self._loaded: OrderedDict[tuple[str, str], Servable] = OrderedDict()  # unpinned, LRU first
        self._lock = threading.Lock()  # guards _loaded and loading (one load at a time)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0  # completed looks at the registry, for readiness and tests

    # ---- reading (request path) ----------------------------------------------------------------------------
    def state(self, model: str) -> ModelState:
        if model not in self._states:
            raise NotFound(f"no model {model!r} is served here; served models: {', '.join(self.models) or 'none'}")
        return self._states[model]

    def by_alias(self, model: str, alias: str) -> Servable | Unservable | None:
        """What answers ``model@alias`` now (one read of the alias table); None when no version holds it."""
        return self._served_state(model, alias).aliases.get(alias)

    def route(self, model: str, alias: str) -> Route:
        """``by_alias`` plus, for ``production`` when its deployment has shadow or canary on, the challenger
        (when it is loaded and another version): all from one read of the table."""
        state = self._served_state(model, alias)
        held = state.aliases.get(alias)
        challenger = state.aliases.get("challenger")
        if (
            alias != "production"
            or not state.traffic.active
            or not isinstance(held, Servable)
            or not isinstance(challenger, Servable)
            or challenger.version == held.version
        ):
            return Route(held)
        return Route(held, challenger, state.traffic, state.deployment_id)

    def _served_state(self, model: str, alias: str) -> ModelState:
        if alias not in ALIASES:
            raise NotFound(f"{model}: unknown alias {alias!r}; aliases: {', '.join(ALIASES)}")
        state = self.state(model)
        if state.marker is None:
            raise NotReady(f"{model}: aliases not loaded yet ({state.last_error or 'warming up'}); retry shortly")
        if not state.registered:
            raise NotFound(f"no model {model!r} is registered yet")
        return state

    def by_version(self, model: str, version: str) -> Servable | Unservable:
        """``model`` version ``version``, loading it on first use (verified like every load)."""
        state = self.state(model)
        for held in state.aliases.values():
            if held.version == version:
                return held
        with self._lock:
            found = self._loaded.get((model, version))
            if found is not None:
                self._loaded.move_to_end((model, version))
                return found
            with self._open_lifecycle() as lifecycle:
                if version not in lifecycle.record(model).versions:
                    known = ", ".join(sorted(lifecycle.record(model).versions, key=int)) or "none"
                    raise NotFound(f"{model} has no version {version!r}; its versions: {known}")
                try:
                    found = self._load(lifecycle, model, version)
                except FeatureGraphMismatch as exc:
                    return Unservable(model, version, exc, self._graph_difference(lifecycle, model, version))
            self._loaded[(model, version)] = found
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return found

    def overridden(self, lifecycle: Lifecycle, model: str, version: str, *, actor: str, reason: str) -> Servable:
        """``version`` loaded despite a feature-graph mismatch, for one request: the override is written to the
        audit log (``load_for_inference`` with ``override_reason``) once per actor and reason in this process."""
        key = (model, f"{version}!override:{actor}:{reason}")
        with self._lock:
            found = self._loaded.get(key)
            if found is None:
                loaded = load_for_inference(
                    lifecycle,
                    self.tracking,
                    model,
                    version,
                    live_graph_hash=self.live_graph_hash,
                    override_reason=reason,
                    actor=actor,
                )
                missing = [f for f in loaded.features if f not in self._feature_view]
                if missing:
                    raise NotFound(f"{model} v{version} needs features the live catalog no longer has: {missing}")
                views = {f: self._feature_view[f] for f in loaded.features}
                found = Servable(model, version, loaded, views, loaded.booster.best_iteration or None)
                self._loaded[key] = found
                while len(self._loaded) > self.capacity:
                    self._loaded.popitem(last=False)
            return found

    def loaded_versions(self, model: str) -> list[str]:
        pinned = [s.version for s in self._states[model].aliases.values() if isinstance(s, Servable)]
        return sorted(set(pinned) | {v for m, v in self._loaded if m == model and v.isdigit()}, key=int)

    def ready(self) -> tuple[bool, list[str]]:
        """Ready when every served model's aliases have been looked up and loaded (or refused for a reason)."""
        waiting = [m for m in self.models if self._states[m].marker is None]
        return not waiting, [f"{m}: {self._states[m].last_error or 'not loaded yet'}" for m in waiting]

    # ---- following the registry --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="model-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _follow(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.0, self.refresh_s - (time.monotonic() - started)))

    def refresh(self) -> None:
        """One look at the registry; reload the models whose aliases or audit head moved."""
        client = self.tracking.client()
        for model in self.models:
            state = self._states[model]
            try:
                registered = client.get_registered_model(model)
                marker: tuple[Any, ...] = (
                    tuple(sorted((a, str(v)) for a, v in registered.aliases.items())),
                    registered.tags.get(AUDIT_HEAD_TAG),
                    registered.tags.get(DEPLOYMENT_TAG),
                )
            except MlflowException:
                marker = ("unregistered",)
            if marker == state.marker:
                continue
            try:
                self._states[model] = self._rebuild(model, marker)
            except Exception as exc:  # the current table keeps serving; retried at the next look
                state.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("serving: could not follow %s's aliases (retrying): %s", model, exc)
        self.refreshes += 1

    def _rebuild(self, model: str, marker: tuple[Any, ...]) -> ModelState:
        if marker == ("unregistered",):
            return ModelState(marker=marker, registered=False)
        old = self._states[model]
        with self._lock, self._open_lifecycle() as lifecycle:
            record = lifecycle.require_consistent(model)
            aliases: dict[str, Servable | Unservable] = {}
            for alias, version in record.aliases.items():
                reuse = next(
                    (s for s in old.aliases.values() if isinstance(s, Servable) and s.version == version), None
                ) or self._loaded.pop((model, version), None)
                if reuse is not None:
                    aliases[alias] = reuse
                    continue
                try:
                    aliases[alias] = self._load(lifecycle, model, version)
                except FeatureGraphMismatch as exc:
                    aliases[alias] = Unservable(model, version, exc, self._graph_difference(lifecycle, model, version))
            deployment_id, traffic = serving_traffic(lifecycle.conn, record)
        for held in old.aliases.values():  # versions that lost their alias stay loaded, unpinned
            if isinstance(held, Servable) and all(h is not held for h in aliases.values()):
                with self._lock:
                    self._loaded[(model, held.version)] = held
                    while len(self._loaded) > self.capacity:
                        self._loaded.popitem(last=False)
        log.info("serving %s: %s, traffic %s", model, {a: s.version for a, s in aliases.items()}, traffic)
        states = {v: r.state for v, r in record.versions.items()}
        return ModelState(
            aliases=aliases,
            marker=marker,
            registered=True,
            states=states,
            deployment_id=deployment_id,
            traffic=traffic,
        )

    def _load(self, lifecycle: Lifecycle, model: str, version: str) -> Servable:
        loaded = load_for_inference(lifecycle, self.tracking, model, version, live_graph_hash=self.live_graph_hash)
        missing = [f for f in loaded.features if f not in self._feature_view]
        if missing:
            raise FeatureGraphMismatch(model, version, loaded.feature_graph_hash, self.live_graph_hash)
        return Servable(
            model=model,
            version=version,
            loaded=loaded,
            feature_views={f: self._feature_view[f] for f in loaded.features},
            best_iteration=loaded.booster.best_iteration or None,
        )

    def _graph_difference(self, lifecycle: Lifecycle, model: str, version: str) -> list[dict[str, Any]] | None:
        """The feature views whose version differs between what the version was trained on (its manifest) and the
        live catalog; None when the manifest cannot be read. Views of equal version and different hash are
        listed too (a change that should have bumped the version)."""
        try:
            manifest = json.loads(self.tracking.read_text_artifact(lifecycle.run_id(model, version), "manifest.json"))
            trained: dict[str, int] = dict(manifest["config"]["feature_views"])
        except (MlopsError, KeyError, TypeError, ValueError):
            return None
        live = {name: view.version for name, view in self.catalog.views.items()}
        return [
            {"view": name, "trained_version": trained.get(name), "live_version": live.get(name)}
            for name in sorted(set(trained) | set(live))
            if name in trained and trained.get(name) != live.get(name)
        ] or [
            {"view": name, "trained_version": v, "live_version": live.get(name), "note": "same version, changed"}
            for name, v in sorted(trained.items())
        ]

    def all_servables(self) -> Iterator[Servable]:
        for state in self._states.values():
            yield from (s for s in state.aliases.values() if isinstance(s, Servable))
