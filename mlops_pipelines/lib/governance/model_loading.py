"""Loading a registered model for inference, the one path for backtests, explanations, monitoring and serving.

Refused, each with its own error: a model whose governance record fails verification (``InconsistentLifecycle``:
a tampered audit log, or MLflow tags/aliases that disagree with it); a version trained on another feature graph
than the live catalog (``FeatureGraphMismatch``, HTTP 409 in serving) unless explicitly overridden, and the
override is audited; an artifact whose sha256 differs from the one recorded at registration in the audit chain
(not only in the MLflow tag, which anyone with registry access can rewrite together with the file).
"""

from dataclasses import dataclass

import lightgbm as lgb

from mlops_pipelines.lib.core.errors import MlopsError, NotFound
from mlops_pipelines.lib.core.tracking import Tracking
from mlops_pipelines.lib.governance.lifecycle import Lifecycle, LifecycleError


class FeatureGraphMismatch(MlopsError, RuntimeError):
    """The model was trained on a different feature graph than the one live now (HTTP 409 in serving)."""

    def __init__(self, model: str, version: str, recorded: str, live: str) -> None:
        super().__init__(
            f"{model} v{version} was trained on feature graph {recorded[:12]}, the live catalog is {live[:12]}: "
            "retrain it, or load with an explicit (audited) override"
        )
        self.model, self.version, self.recorded, self.live = model, version, recorded, live


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    booster: lgb.Booster
    features: list[str]
    feature_graph_hash: str


def resolve(lifecycle: Lifecycle, model: str, ref: str) -> str:
    """``ref`` is a version number or an alias (``production``, ``staging``, ``challenger``), resolved by the
    audit log (MLflow's aliases must agree with it, or the model is refused as inconsistent)."""
    if ref.isdigit():
        return ref
    version = lifecycle.record(model).aliases.get(ref)
    if version is None:
        raise NotFound(f"{model}@{ref} does not resolve to a registered version")
    return version


def load_for_inference(
    lifecycle: Lifecycle,
    tracking: Tracking,
    model: str,
    ref: str,
    *,
    live_graph_hash: str,
    override_reason: str | None = None,
    actor: str | None = None,
) -> LoadedModel:
    """Verify the model's governance record, then the feature graph, then the artifact; load the native file."""
    record = lifecycle.require_consistent(model)
    version = resolve(lifecycle, model, ref)
    found = record.versions.get(version)
    if found is None:
        raise NotFound(f"{model} v{version} is not a registered version")
    recorded = str(found.registered.get("feature_graph_hash", ""))
    if recorded != live_graph_hash:
        if override_reason is None:
            raise FeatureGraphMismatch(model, version, recorded, live_graph_hash)
        if actor is None:
            raise ValueError("an override must be audited: pass the actor")
        lifecycle.record_override(
            model,
            version,
            actor=actor,
            reason=f"loaded despite feature graph {recorded[:12]} != live {live_graph_hash[:12]}: {override_reason}",
        )
    sha256, source = found.registered.get("artifact_sha256"), found.registered.get("source")
    if not sha256 or not source:
        raise LifecycleError(f"{model} v{version} has no recorded source or artifact sha256: refusing to load it")
    booster = tracking.load_verified_booster(str(source), str(sha256))
    return LoadedModel(
        name=model, version=version, booster=booster, features=booster.feature_name(), feature_graph_hash=recorded
    )
