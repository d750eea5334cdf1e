"""Loading a registered model for inference: resolve by alias or version, refuse a feature-graph mismatch
(serving maps it to HTTP 409) unless explicitly overridden (and audited), verify the artifact's sha256."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import duckdb
import lightgbm as lgb
from mlflow.exceptions import MlflowException

from mlops_pipelines.lib.lifecycle import Lifecycle
from mlops_pipelines.lib.tracking import Tracking


class FeatureGraphMismatch(RuntimeError):
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


def load_for_inference(
    tracking: Tracking,
    model: str,
    ref: str,
    *,
    live_graph_hash: str,
    connect_warehouse: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]] | None = None,
    override_reason: str | None = None,
    actor: str | None = None,
) -> LoadedModel:
    """``ref`` is an alias (``production``, ``staging``, ``challenger``) or a version number."""
    client = tracking.client()
    try:
        mv = client.get_model_version(model, ref) if ref.isdigit() else client.get_model_version_by_alias(model, ref)
    except MlflowException as exc:
        raise LookupError(f"{model}@{ref} does not resolve to a registered version") from exc
    recorded = mv.tags.get("feature_graph_hash", "")
    if recorded != live_graph_hash:
        if override_reason is None:
            raise FeatureGraphMismatch(model, str(mv.version), recorded, live_graph_hash)
        if connect_warehouse is None or actor is None:
            raise ValueError("an override must be audited: pass connect_warehouse and actor")
        with connect_warehouse() as conn:
            Lifecycle(client, conn).record_override(
                model,
                str(mv.version),
                actor=actor,
                reason=f"loaded despite feature graph {recorded[:12]} != live {live_graph_hash[:12]}: "
                f"{override_reason}",
            )
    if not mv.source or "artifact_sha256" not in mv.tags:
        raise LookupError(f"{model} v{mv.version} has no source or no recorded artifact sha256: refusing to load it")
    booster = tracking.load_verified_booster(mv.source, mv.tags["artifact_sha256"])
    return LoadedModel(
        name=model,
        version=str(mv.version),
        booster=booster,
        features=booster.feature_name(),
        feature_graph_hash=recorded,
    )
